import MSCore
