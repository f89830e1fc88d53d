import MSCommandLine

// Thin entry point: everything lives in the Simulator library and MindieSimCommand.swift.
MindieSimCommand.runWithExitStatus()
