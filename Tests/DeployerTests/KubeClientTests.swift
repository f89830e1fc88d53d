import Foundation
import Testing
import TestSupport
@testable import Control
import MSCore
import Synchronization

@Suite struct KubeClientTests {
    func cm(_ name: String, ns: String = "mindie") -> KubeObject {
        KubeObject(kind: .configMap, namespace: ns, name: name,
                   body: jo(["apiVersion": js("v1"), "kind": js("ConfigMap"), "metadata": jo(["name": js(name), "labels": jo(["app": "x"])]),
                             "data": jo(["k": "v"])]))
    }

    @Test func typedErrorsAndBearerToken() async throws {
        let fake = try FakeKubeAPIServer(token: "s3cret")
        defer { fake.stop() }
        let anonymous = try KubeClient(endpoint: KubeEndpoint(host: "127.0.0.1", port: fake.port, tls: nil))
        await #expect(throws: KubeError.self) { _ = try await anonymous.get(.configMap, namespace: "mindie", name: "a") }
        do { _ = try await anonymous.get(.configMap, namespace: "mindie", name: "a") } catch {
            guard case .unauthorized = error else { Issue.record("want 401, got \(error)"); return }
        }
        let kube = try KubeClient(endpoint: KubeEndpoint(host: "127.0.0.1", port: fake.port, tls: nil, bearerToken: "s3cret"))
        // 404
        do { _ = try await kube.get(.configMap, namespace: "mindie", name: "a"); Issue.record("no 404") } catch {
            #expect(error.isNotFound)
            #expect(error.description.contains("configmaps \"a\" not found"))
        }
        #expect(try await kube.getIfExists(.configMap, namespace: "mindie", name: "a") == nil)
        // create, then 409
        _ = try await kube.create(cm("a"))
        do { _ = try await kube.create(cm("a")); Issue.record("no 409") } catch {
            guard case .conflict = error else { Issue.record("want 409, got \(error)"); return }
        }
        // 422: a Service name must be a DNS-1035 label
        let bad = KubeObject(kind: .service, namespace: "mindie", name: "9bad",
                             body: jo(["apiVersion": js("v1"), "kind": js("Service"), "metadata": jo(["name": js("9bad")])]))
        do { _ = try await kube.create(bad); Issue.record("no 422") } catch {
            guard case .invalid = error else { Issue.record("want 422, got \(error)"); return }
        }
        // 403
        fake.state.withLock { $0.forbidden = ["configmaps"] }
        do { try await kube.delete(.configMap, namespace: "mindie", name: "a"); Issue.record("no 403") } catch {
            guard case .forbidden = error else { Issue.record("want 403, got \(error)"); return }
        }
        fake.state.withLock { $0.forbidden = [] }
        // patch (merge) and list by label / field selector
        let patched = try await kube.patch(.configMap, namespace: "mindie", name: "a", patch: jo(["data": jo(["k": "w"])]), strategic: false)
        #expect(patched.at("data", "k") == js("w"))
        _ = try await kube.create(cm("b", ns: "other"))
        let all = try await kube.list(.configMap, namespace: nil, labelSelector: "app=x")
        #expect(all["items"]?.arrayValue?.count == 2)
        let one = try await kube.list(.configMap, namespace: nil, fieldSelector: "metadata.name=b")
        #expect(one["items"]?.arrayValue?.count == 1)
        let none = try await kube.list(.configMap, namespace: "mindie", labelSelector: "app=y")
        #expect(none["items"]?.arrayValue?.isEmpty == true)
        try await kube.delete(.configMap, namespace: "mindie", name: "a")
        #expect(fake.names("configmaps", "mindie").isEmpty)
    }

    @Test func transportErrorWhenNothingListens() async throws {
        // a stopped fake's port could be given to another test's server in between (seen: a 404 from one)
        let kube = try KubeClient(endpoint: KubeEndpoint(host: "127.0.0.1", port: deadPort(), tls: nil, timeoutMilliseconds: 1000))
        do { _ = try await kube.get(.pod, namespace: "mindie", name: "p"); Issue.record("no error") } catch {
            guard case .transport = error else { Issue.record("want transport, got \(error)"); return }
        }
    }

    @Test func kubeconfigWithInlineCertificates() throws {
        let dir = tempDir("kubeconfig")
        let yaml = """
            apiVersion: v1
            kind: Config
            clusters:
            - cluster:
                certificate-authority-data: \(Data("CA".utf8).base64EncodedString())
                server: https://10.1.2.3:6443
              name: prod
            - name: lab
              cluster:
                server: "http://127.0.0.1:8001"
            contexts:
            - context:
                cluster: prod
                user: admin
              name: prod-admin
            - name: lab
              context:
                cluster: lab
                user: tok
            current-context: prod-admin
            users:
            - name: admin
              user:
                client-certificate: certs/admin.pem
                client-key-data: \(Data("KEY".utf8).base64EncodedString())
            - name: tok
              user:
                token: abc.def # a comment
            """
        let e = try Kubeconfig.endpoint(text: yaml, directory: dir.path)
        #expect(e.host == "10.1.2.3" && e.port == 6443 && e.bearerToken == nil)
        #expect(e.tls?.certificatePath == "\(dir.path)/certs/admin.pem")
        let keyPath = try #require(e.tls?.privateKeyPath)
        #expect(try String(contentsOfFile: keyPath, encoding: .utf8) == "KEY")
        #expect(try String(contentsOfFile: try #require(e.tls?.caPath), encoding: .utf8) == "CA")
        let lab = try Kubeconfig.endpoint(text: yaml, directory: dir.path, context: "lab")
        #expect(lab.host == "127.0.0.1" && lab.port == 8001 && lab.tls == nil && lab.bearerToken == "abc.def")
        #expect(throws: Kubeconfig.Error.self) { try Kubeconfig.endpoint(text: yaml, directory: dir.path, context: "nope") }
    }

    @Test func kubeconfigAsJSON() throws {
        let json = #"{"current-context":"c","contexts":[{"name":"c","context":{"cluster":"k","user":"u"}}],"clusters":[{"name":"k","cluster":{"server":"https://example.test"}}],"users":[{"name":"u","user":{"token":"t"}}]}"#
        let e = try Kubeconfig.endpoint(text: json, directory: "/tmp")
        #expect(e.host == "example.test" && e.port == 443 && e.bearerToken == "t" && e.tls != nil)
    }
}

@Suite struct DeployerConfigTests {
    let base = #"{"ip":"127.0.0.1","port":9789,"k8s_apiserver_ip":"127.0.0.1","k8s_apiserver_port":6443,"ms_status_file":"/tmp/s.json","server_tls_enable":false,"client_k8s_tls_enable":false,"client_mindie_server_tls_enable":false}"#

    func parse(_ patch: String, env: [String: String] = [:]) -> Result<DeployerConfig, ConfigError> {
        let doc = try! JSON.parse(Data(base.utf8)).merging(try! JSON.parse(Data(patch.utf8)))
        return Result { () throws(ConfigError) in try DeployerConfig.parse(Array(doc.compact.utf8), environment: env, file: "/etc/ms/ms_deployer.json") }
    }

    func message(_ patch: String, env: [String: String] = [:]) -> String? {
        guard case .failure(let e) = parse(patch, env: env) else { return nil }
        return e.description
    }

    @Test func defaultsAndOverrides() throws {
        let c = try parse("{}").get()
        #expect(c.port == 9789 && c.apiserverPort == 6443 && c.namespace == "mindie" && !c.serverTLSEnable)
        #expect(try parse("{}", env: ["MINDIE_MS_SERVER_IP": "10.0.0.7"]).get().ip == "10.0.0.7")
        #expect(try parse(#"{"kubeconfig":"/root/.kube/config","k8s_apiserver_ip":null}"#).get().kubeconfig == "/root/.kube/config")
    }

    /// docs/wire/deployer.md §7 cases 10, 11, 12, 13.
    @Test(arguments: [#"{"ip":"256.0.0.0"}"#, #"{"ip":"0.0.0.0"}"#, #"{"ip":""}"#, #"{"ip":"127.0.0.1."}"#, #"{"ip":127}"#, #"{"ip":null}"#,
                      #"{"k8s_apiserver_ip":"127.a.0.1"}"#, #"{"port":1023}"#, #"{"port":65536}"#, #"{"port":"sss"}"#, #"{"k8s_apiserver_port":-20}"#,
                      #"{"ms_status_file":123}"#, #"{"ms_status_file":null}"#, #"{"server_tls_enable":true}"#,
                      #"{"client_k8s_tls_enable":true,"client_k8s_tls_items":{"ca_cert":"a","tls_cert":"b","tls_key":1,"tls_passwd":"","tls_crl":""}}"#,
                      #"{"client_mindie_server_tls_enable":"yes"}"#, #"{"namespace":"Bad"}"#])
    func refuses(_ patch: String) {
        guard case .failure(let e) = parse(patch) else { Issue.record("accepted \(patch)"); return }
        #expect(e.description.hasPrefix("/etc/ms/ms_deployer.json: "))
    }

    /// The one config error format of every binary (DECISIONS 3): `FILE: KEY = VALUE: allowed ALLOWED`.
    @Test func errorsNameFileKeyValueAndWhatIsAllowed() {
        let f = "/etc/ms/ms_deployer.json"
        let ip = "allowed an IPv4 or IPv6 address other than 0.0.0.0 and ::"
        #expect(message(#"{"port":"sss"}"#) == "\(f): port = \"sss\": allowed integer 1024...65535")
        #expect(message(#"{"k8s_apiserver_port":-20}"#) == "\(f): k8s_apiserver_port = -20: allowed integer 1024...65535")
        #expect(message(#"{"rank_table_sync_seconds":3601}"#) == "\(f): rank_table_sync_seconds = 3601: allowed integer 1...3600")
        #expect(message(#"{"ms_status_file":null}"#) == "\(f): ms_status_file = <missing>: allowed a non-empty file path")
        #expect(message(#"{"ms_status_file":""}"#) == "\(f): ms_status_file = \"\": allowed a non-empty file path")
        #expect(message(#"{"client_mindie_server_tls_enable":null}"#) == "\(f): client_mindie_server_tls_enable = <missing>: allowed true or false")
        #expect(message(#"{"client_mindie_server_tls_enable":"yes"}"#) == "\(f): client_mindie_server_tls_enable = \"yes\": allowed true or false")
        #expect(message(#"{"ip":"256.0.0.0"}"#) == "\(f): ip = \"256.0.0.0\": \(ip)")
        #expect(message(#"{"ip":"::"}"#) == "\(f): ip = \"::\": \(ip)")
        #expect(message(#"{"ip":127}"#) == "\(f): ip = 127: \(ip)")
        #expect(message(#"{"k8s_apiserver_ip":null}"#) == "\(f): k8s_apiserver_ip = <missing>: \(ip)")
        #expect(message("{}", env: ["MINDIE_MS_SERVER_IP": "10.0.0.256"]) == "environment: MINDIE_MS_SERVER_IP = 10.0.0.256: \(ip)")
        #expect(message(#"{"server_tls_enable":true}"#) == "\(f): server_tls_items = <missing>: allowed an object")
        #expect(message(#"{"client_k8s_tls_enable":true,"client_k8s_tls_items":{"ca_cert":"a","tls_cert":"b","tls_key":1,"tls_passwd":"","tls_crl":""}}"#)
                == "\(f): client_k8s_tls_items.tls_key = 1: allowed a string of 1...4096 bytes")
        #expect(message(#"{"namespace":"Bad"}"#)
                == "\(f): namespace = \"Bad\": allowed a DNS-1123 label (lowercase letters, digits and '-', at most 48 characters)")
        // optional paths and the log level: a wrong type is refused, not taken as "unset"
        #expect(message(#"{"kubeconfig":5}"#) == "\(f): kubeconfig = 5: allowed a kubeconfig file path or \"in-cluster\"")
        #expect(message(#"{"k8s_token_file":["t"]}"#) == "\(f): k8s_token_file = [\"t\"]: allowed a token file path")
        #expect(message(#"{"log_info":{"log_level":3}}"#) == "\(f): log_info.log_level = 3: allowed a string (a log level)")
        #expect((try? parse(#"{"kubeconfig":null,"k8s_token_file":"","log_info":{"log_level":null}}"#).get())?.k8sTokenFile == nil)
        #expect((try? parse(#"{"kubeconfig":null,"k8s_token_file":"","log_info":{"log_level":null}}"#).get()) != nil)
        let notObject = Result { () throws(ConfigError) in try DeployerConfig.parse(Array("[1]".utf8), file: f) }
        #expect(throws: ConfigError(code: .invalidJSON, file: f, key: "<document>", value: "[1]", allowed: "a JSON object")) { try notObject.get() }
    }

    @Test func errorCodesTellTheKindOfMistake() {
        func code(_ patch: String) -> ConfigError.Code? {
            guard case .failure(let e) = parse(patch) else { return nil }
            return e.code
        }
        #expect(code(#"{"port":"sss"}"#) == .wrongType)
        #expect(code(#"{"port":80}"#) == .outOfRange)
        #expect(code(#"{"ip":null}"#) == .missingKey)
        #expect(code(#"{"ip":"127.0.1"}"#) == .invalidValue)
    }

    @Test func tlsItemsWithMissingFilesStillParse() throws {
        let c = try parse(#"{"client_k8s_tls_enable":true,"client_k8s_tls_items":{"ca_cert":"/nope/ca.pem","tls_cert":"b","tls_key":"c","tls_passwd":"","tls_crl":""}}"#).get()
        #expect(c.k8sTLS?.caCert == "/nope/ca.pem")
        #expect(throws: ConfigLoadError.self) { try c.kubeEndpoint(environment: [:]) }
    }

    @Test func shippedConfigParses() throws {
        let doc = try JSON.parse(Data(contentsOf: packageRoot.appendingPathComponent("conf/ms_deployer.json")))
        let c = try DeployerConfig.parse(doc)
        #expect(c.port == 9789 && !c.serverTLSEnable)
        let ref = try JSON.parse(Data(contentsOf: packageRoot.appendingPathComponent("../shared/reference-conf/ms_server.json")))
        #expect(try DeployerConfig.parse(ref).serverTLSEnable)
    }
}

@Suite struct StatusStoreTests {
    @Test func createsAMissingFileAndDropsInvalidEntries() throws {
        let dir = tempDir("status")
        let path = dir.appendingPathComponent("status.json").path
        let store = StatusStore(path: path)
        #expect(try store.load(mindieTLS: false, environment: [:]).entries.isEmpty)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "{\n    \"server_list\": []\n}\n")
        #expect((try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) == 0o640)
        let good = try spec()
        try store.save([StatusStore.Entry(namespace: "mindie", spec: good)])
        var text = try String(contentsOfFile: path, encoding: .utf8)
        text = text.replacingOccurrences(of: "\"server_list\": [", with: "\"server_list\": [{\"server_name\":\"a b\",\"namespace\":\"mindie\"},")
        write(text, to: URL(fileURLWithPath: path))
        let r = try store.load(mindieTLS: false, environment: [:])
        #expect(r.entries.map(\.spec) == [good])
        #expect(r.dropped.count == 1)
        #expect(try store.load(mindieTLS: true, environment: [:]).entries.count == 1)  // a TLS switch does not orphan servers
        #expect(try !String(contentsOfFile: path, encoding: .utf8).contains("a b"))  // rewritten
        write("not json", to: URL(fileURLWithPath: path))
        #expect(throws: ConfigLoadError.self) { try store.load(mindieTLS: false, environment: [:]) }
        #expect(throws: ConfigLoadError.self) { try StatusStore(path: "/nonexistent-dir/s.json").load(mindieTLS: false, environment: [:]) }
    }
}

@Suite struct InClusterTests {
    @Test func serviceAccountEndpoint() throws {
        let dir = tempDir("sa")
        write("tok\n", to: dir.appendingPathComponent("token"))
        write("CA", to: dir.appendingPathComponent("ca.crt"))
        let e = try DeployerConfig.inClusterEndpoint(environment: ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"],
                                                     directory: dir.path)
        #expect(e.host == "10.96.0.1" && e.port == 443 && e.bearerToken == "tok" && e.tls?.caPath == "\(dir.path)/ca.crt")
        #expect(throws: ConfigLoadError.self) { try DeployerConfig.inClusterEndpoint(environment: [:], directory: dir.path) }
    }
}
