import Foundation
import Testing
import TestSupport
@testable import Control
import MSCore

/// msctl's config and file checks and exit codes (DECISIONS 24), through `MsctlClient` and through the binary.
@Suite struct MsctlTests {
    let dir = tempDir("msctl")

    func config(_ http: String, mode: mode_t = 0o640) -> String {
        write(#"{"http":\#(http),"log_level":"INFO"}"#, to: dir.appendingPathComponent("msctl-\(UUID().uuidString.prefix(6)).json"), mode: mode)
    }

    let plain = #"{"dstIP":"127.0.0.1","dstPort":9789,"tls_enable":false,"ca_cert":"a","tls_cert":"b","tls_key":"c","tls_crl":"","timeout":5}"#

    @Test func missingHomeOrConfigIsALocalError() async {
        #expect(await MsctlClient.run(.get(name: "a"), environment: [:]).exitCode == 2)
        let o = await MsctlClient.run(.get(name: "a"), environment: ["HOME": dir.path])
        #expect(o.exitCode == 2 && o.stderr.contains(".mindie_ms/msctl.json"))
    }

    /// docs/wire/deployer.md §7 cases 3, 4, 5.
    @Test(arguments: [#""123""#, #"{"dstIP":123,"dstPort":9789,"timeout":5}"#, #"{"dstIP":"123","dstPort":9789,"timeout":5}"#,
                      #"{"dstIP":"0.0.0.0","dstPort":9789,"timeout":5}"#, #"{"dstIP":"127.0.0.1","dstPort":123,"timeout":5}"#,
                      #"{"dstIP":"127.0.0.1","dstPort":9789,"timeout":123}"#, #"{"dstIP":"127.0.0.1","dstPort":9789}"#,
                      #"{"dstIP":"127.0.0.1","dstPort":9789,"timeout":5,"ca_cert":123,"tls_cert":"b","tls_key":"c","tls_crl":""}"#,
                      #"{"dstIP":"127.0.0.1","dstPort":9789,"timeout":5,"ca_cert":"/nope","tls_cert":"/nope","tls_key":"/nope","tls_crl":""}"#])
    func badConfigs(_ http: String) async {
        let o = await MsctlClient.run(.get(name: "a"), environment: [:], configPath: config(http))
        #expect(o.exitCode == 2, "\(http): \(o)")
    }

    /// The one config error format of every binary (DECISIONS 3), after msctl's own prefix.
    @Test func configErrorsNameFileKeyValueAndWhatIsAllowed() async {
        func stderr(_ http: String) async -> (String, String) {
            let path = config(http)
            let o = await MsctlClient.run(.get(name: "a"), environment: [:], configPath: path)
            #expect(o.exitCode == 2)
            return (path, o.stderr)
        }
        let ip = "allowed an IPv4 or IPv6 address other than 0.0.0.0 and ::"
        var (f, e) = await stderr(#"{"dstIP":"0.0.0.0","dstPort":9789,"timeout":5}"#)
        #expect(e == "msctl: \(f): http.dstIP = \"0.0.0.0\": \(ip)\n")
        (f, e) = await stderr(#"{"dstIP":123,"dstPort":9789,"timeout":5}"#)
        #expect(e == "msctl: \(f): http.dstIP = 123: \(ip)\n")
        (f, e) = await stderr(#"{"dstIP":"127.0.0.1","dstPort":"9789","timeout":5}"#)
        #expect(e == "msctl: \(f): http.dstPort = \"9789\": allowed integer 1024...65535\n")
        (f, e) = await stderr(#"{"dstIP":"127.0.0.1","dstPort":9789,"timeout":123}"#)
        #expect(e == "msctl: \(f): http.timeout = 123: allowed integer 1...60\n")
        (f, e) = await stderr(#"{"dstIP":"127.0.0.1","dstPort":9789}"#)
        #expect(e == "msctl: \(f): http.timeout = <missing>: allowed integer 1...60\n")
        (f, e) = await stderr(#"{"dstIP":"127.0.0.1","dstPort":9789,"timeout":5,"ca_cert":"","tls_cert":"b","tls_key":"c","tls_crl":""}"#)
        #expect(e == "msctl: \(f): http.ca_cert = \"\": allowed a string of 1...4096 bytes\n")
        (f, e) = await stderr(#""123""#)
        #expect(e == "msctl: \(f): http = \"123\": allowed an object\n")
    }

    @Test func configPermissionsAreChecked() async {
        let loose = config(plain, mode: 0o644)
        #expect(await MsctlClient.run(.get(name: "a"), environment: [:], configPath: loose).exitCode == 2)
        let link = dir.appendingPathComponent("link.json").path
        try? FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: config(plain))
        #expect(await MsctlClient.run(.get(name: "a"), environment: [:], configPath: link).exitCode == 2)
        // MINDIE_CHECK_INPUTFILES_PERMISSION=0 lifts the mode check; then the dead port gives a transport error (1)
        let o = await MsctlClient.run(.get(name: "a"), environment: ["MINDIE_CHECK_INPUTFILES_PERMISSION": "0"], configPath: loose)
        #expect(o.exitCode == 1, "\(o)")
    }

    /// docs/wire/deployer.md §7 cases 6, 7.
    @Test func specFileChecks() async {
        let cfg = config(plain)
        #expect(await MsctlClient.run(.create(file: "path/not/exist"), environment: [:], configPath: cfg).exitCode == 2)
        let loose = write(specJSON(), to: dir.appendingPathComponent("loose.json"), mode: 0o644)
        #expect(await MsctlClient.run(.create(file: loose), environment: [:], configPath: cfg).exitCode == 2)
        let noName = write(#"{"replicas":2}"#, to: dir.appendingPathComponent("u1.json"))
        #expect(await MsctlClient.run(.update(file: noName), environment: [:], configPath: cfg).exitCode == 2)
        let intName = write(#"{"server_name":123}"#, to: dir.appendingPathComponent("u2.json"))
        #expect(await MsctlClient.run(.update(file: intName), environment: [:], configPath: cfg).exitCode == 2)
    }

    @Test func requestsAreTheReferences() throws {
        let cfg = MsctlClient.Config(host: "127.0.0.1", port: 9789, timeoutSeconds: 5, tls: nil)
        let upd = write(#"{"server_name":"mindie-server"}"#, to: dir.appendingPathComponent("update.json"))
        let r = try MsctlClient.request(.update(file: upd), config: cfg, environment: [:])
        #expect(r.method == "POST" && r.path == "/v1/servers/mindie-server" && r.body == Array(#"{"server_name":"mindie-server"}"#.utf8))
        #expect(r.headers.contains { $0.0 == "Content-Type" && $0.1 == "application/json" })
        #expect(try MsctlClient.request(.delete(name: "x"), config: cfg, environment: [:]).method == "DELETE")
        #expect(MsctlClient.format(Array(#"{"status":"0","message":"m"}"#.utf8)) == "{\n    \"message\": \"m\",\n    \"status\": \"0\"\n}\n")
        #expect(MsctlClient.format(Array(String(repeating: "x", count: 300).utf8)).count == 257)
    }

    @Test func renderPrintsYAML() {
        let f = write(specJSON("mindie_pd_cluster", name: "pd"), to: dir.appendingPathComponent("pd.json"))
        let o = MsctlClient.render(file: f, namespace: "lab", environment: [:], configChecks: startChecks)
        #expect(o.exitCode == 0)
        #expect(o.stdout.components(separatedBy: "---\n").count == 17)  // the Namespace, then 15 objects
        #expect(o.stdout.contains("namespace: lab"))
        let bad = write(specJSON(name: "Bad"), to: dir.appendingPathComponent("bad.json"))
        #expect(MsctlClient.render(file: bad, namespace: "lab", environment: [:], configChecks: startChecks).exitCode == 2)
    }

    /// The built binary, when `swift build` made it next to the test bundle.
    @Test func binaryExitCodes() async throws {
        let bin = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("msctl").path
        let candidates = [bin, packageRoot.appendingPathComponent(".build-deploy/debug/msctl").path]
        // `swift test` builds the executables beside the test bundle; a missing one is a broken build, not a pass
        let msctl = try #require(candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }),
                                 "msctl binary not built (looked in \(candidates))")
        let env = ["HOME": dir.path, "PATH": "/usr/bin:/bin"]
        var r = try await runOffPool(msctl, ["-h"], environment: env)
        #expect(r.status == 0 && r.stdout.contains("create"))
        r = try await runOffPool(msctl, ["--version"], environment: env)
        #expect(r.status == 0 && r.stdout.hasPrefix("msctl "))
        r = try await runOffPool(msctl, [], environment: env)
        #expect(r.status == 2)
        r = try await runOffPool(msctl, ["get", "infer_server"], environment: env)
        #expect(r.status == 2)
        r = try await runOffPool(msctl, ["list", "infer_server", "-n", "a"], environment: env)
        #expect(r.status == 2)
        r = try await runOffPool(msctl, ["get", "infer_service", "-n", "a"], environment: env)
        #expect(r.status == 2)
        r = try await runOffPool(msctl, ["get", "infer_server", "-n", "a"], environment: env)  // no ~/.mindie_ms/msctl.json
        #expect(r.status == 2)
        try FileManager.default.createDirectory(at: dir.appendingPathComponent(".mindie_ms"), withIntermediateDirectories: true)
        write(#"{"http":{"dstIP":"127.0.0.1","dstPort":1024,"tls_enable":false,"ca_cert":"a","tls_cert":"b","tls_key":"c","tls_crl":"","timeout":2}}"#,
              to: dir.appendingPathComponent(".mindie_ms/msctl.json"))
        r = try await runOffPool(msctl, ["get", "infer_server", "-n", "a"], environment: env)
        #expect(r.status == 1, "\(r.stderr)")  // nothing listens on 1024
        let f = write(specJSON(), to: dir.appendingPathComponent("spec.json"))
        r = try await runOffPool(msctl, ["render", "infer_server", "-f", f], environment: env)
        #expect(r.status == 0 && r.stdout.hasPrefix("---\napiVersion: v1\nkind: Namespace\n") && r.stdout.contains("---\napiVersion: apps/v1\nkind: Deployment\n"))
    }
}

/// The built ms_deployer binary: --version, config errors (exit 2 before listening), SIGTERM stops it (exit 0).
@Suite struct DeployerBinaryTests {
    @Test func startsServesAndStops() async throws {
        let bin = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("ms_deployer").path
        let candidates = [bin, packageRoot.appendingPathComponent(".build-deploy/debug/ms_deployer").path]
        let exe = try #require(candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }),
                               "ms_deployer binary not built (looked in \(candidates))")
        var r = try await runOffPool(exe, ["--version"])
        #expect(r.status == 0 && r.stdout.hasPrefix("ms_deployer "))
        let dir = tempDir("msd")
        let bad = write(#"{"ip":"0.0.0.0","ms_status_file":"x"}"#, to: dir.appendingPathComponent("bad.json"))
        r = try await runOffPool(exe, [bad])
        #expect(r.status == 2 && r.stderr.contains("ip"), "\(r.stderr)")
        let port = deadPort()
        let good = write("""
            {"ip":"127.0.0.1","port":\(port),"k8s_apiserver_ip":"127.0.0.1","k8s_apiserver_port":8001,"ms_status_file":"\(dir.path)/status.json",
             "server_tls_enable":false,"client_k8s_tls_enable":false,"client_mindie_server_tls_enable":false}
            """, to: dir.appendingPathComponent("good.json"))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = [good]
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { p.terminate() } }
        let client = HTTPClient()
        var answered = false
        for _ in 0..<50 {
            if let r = try? await client.execute(HTTPClientRequest(host: "127.0.0.1", port: port, path: "/v1/servers", timeoutMilliseconds: 500)) {
                #expect(r.status == 200 && r.text == #"{"data":[],"message":"success","status":"0"}"#)
                answered = true
                break
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(answered)
        kill(p.processIdentifier, SIGTERM)
        await offPool { p.waitUntilExit() }
        #expect(p.terminationStatus == 0)
        #expect(FileManager.default.fileExists(atPath: "\(dir.path)/status.json"))
    }
}
