import Testing
@testable import Gateway
import Foundation

@Suite("Prometheus aggregation (docs/wire/coordinator.md §7)")
struct MetricsAggregationTests {
    let a = """
    # HELP request_received_total Count of received requests.
    # TYPE request_received_total counter
    request_received_total{model_name="m"} 3
    # HELP npu_cache_usage_perc Cache usage.
    # TYPE npu_cache_usage_perc gauge
    npu_cache_usage_perc{model_name="m"} 0.5
    # HELP time_to_first_token_seconds TTFT.
    # TYPE time_to_first_token_seconds histogram
    time_to_first_token_seconds_bucket{model_name="m",le="0.1"} 1
    time_to_first_token_seconds_bucket{model_name="m",le="+Inf"} 2
    time_to_first_token_seconds_sum{model_name="m"} 0.25
    time_to_first_token_seconds_count{model_name="m"} 2
    # HELP npu_radix_match_hit_num Hits.
    # TYPE npu_radix_match_hit_num counter
    npu_radix_match_hit_num{model_name="m"} 3
    # HELP all_radix_match_num Lookups.
    # TYPE all_radix_match_num counter
    all_radix_match_num{model_name="m"} 4
    # HELP npu_prefix_cache_hit_rate Rate.
    # TYPE npu_prefix_cache_hit_rate gauge
    npu_prefix_cache_hit_rate{model_name="m"} 0.75

    """

    @Test("case 37: counters, gauges and histogram lines summed; cache usage weighted; hit rate from its counters; overrides")
    func sums() {
        let b = a.replacingOccurrences(of: "} 3\n", with: "} 1\n").replacingOccurrences(of: "0.5", with: "0.1")
            .replacingOccurrences(of: "all_radix_match_num{model_name=\"m\"} 4", with: "all_radix_match_num{model_name=\"m\"} 4")
        let out = PrometheusAggregation.aggregate([(a, 100, false), (b, 300, false)], overrides: ["request_success_total": 9])
        #expect(out.contains("# TYPE request_received_total counter\nrequest_received_total{model_name=\"m\"} 4\n"))
        #expect(out.contains("npu_cache_usage_perc{model_name=\"m\"} 0.2\n"))  // (0.5·100 + 0.1·300) / 400
        #expect(out.contains("time_to_first_token_seconds_bucket{model_name=\"m\",le=\"+Inf\"} 4\n"))
        #expect(out.contains("time_to_first_token_seconds_sum{model_name=\"m\"} 0.5\n"))
        #expect(out.contains("npu_prefix_cache_hit_rate{model_name=\"m\"} 0.5\n"))  // (3 + 1) / (4 + 4)
        let overridden = PrometheusAggregation.aggregate([(a, 1, false)], overrides: ["request_received_total": 42])
        #expect(overridden.contains("request_received_total{model_name=\"m\"} 42\n"))
    }

    /// What a vLLM engine's prometheus_client exposes besides work counters: its start time, `*_created` timestamps
    /// (as separate gauge families) and info gauges.
    static func vllm(start: Double, created: Double, blockSize: Int, requests: Int) -> String {
        """
        # HELP process_start_time_seconds Start time of the process since unix epoch in seconds.
        # TYPE process_start_time_seconds gauge
        process_start_time_seconds \(start)
        # HELP python_info Python platform information
        # TYPE python_info gauge
        python_info{implementation="CPython",major="3",minor="12",patchlevel="3",version="3.12.3"} 1.0
        # HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
        # TYPE vllm:cache_config_info gauge
        vllm:cache_config_info{block_size="\(blockSize)",gpu_memory_utilization="0.9"} 1.0
        # HELP vllm:request_success_total Count of successfully processed requests.
        # TYPE vllm:request_success_total counter
        vllm:request_success_total{finished_reason="stop",model_name="m"} \(requests).0
        # HELP vllm:request_success_created Count of successfully processed requests.
        # TYPE vllm:request_success_created gauge
        vllm:request_success_created{finished_reason="stop",model_name="m"} \(created)
        # HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
        # TYPE vllm:time_to_first_token_seconds histogram
        vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="m"} \(requests).0
        vllm:time_to_first_token_seconds_count{model_name="m"} \(requests).0
        vllm:time_to_first_token_seconds_sum{model_name="m"} 0.5

        """
    }

    @Test("start times, *_created timestamps and *_info values are kept per instance, never summed; work is summed")
    func perInstanceGauges() {
        let out = PrometheusAggregation.aggregate(
            [(Self.vllm(start: 1.795e9, created: 1.7950001e9, blockSize: 16, requests: 3), 1, false),
             (Self.vllm(start: 1.796e9, created: 1.7960001e9, blockSize: 32, requests: 4), 1, false)],
            instances: ["7", "9"], overrides: [:])
        #expect(out.contains("# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds{instance=\"7\"} 1795000000\n"
            + "process_start_time_seconds{instance=\"9\"} 1796000000\n"))
        #expect(!out.contains("3591000000"))
        #expect(out.contains("vllm:request_success_created{instance=\"7\",finished_reason=\"stop\",model_name=\"m\"} 1795000100\n"))
        #expect(out.contains("vllm:request_success_created{instance=\"9\",finished_reason=\"stop\",model_name=\"m\"} 1796000100\n"))
        #expect(out.contains("python_info{instance=\"7\",implementation=\"CPython\",major=\"3\",minor=\"12\",patchlevel=\"3\",version=\"3.12.3\"} 1\n"))
        #expect(out.contains("vllm:cache_config_info{instance=\"7\",block_size=\"16\",gpu_memory_utilization=\"0.9\"} 1\n"))
        #expect(out.contains("vllm:cache_config_info{instance=\"9\",block_size=\"32\",gpu_memory_utilization=\"0.9\"} 1\n"))
        // work is still summed
        #expect(out.contains("vllm:request_success_total{finished_reason=\"stop\",model_name=\"m\"} 7\n"))
        #expect(out.contains("vllm:time_to_first_token_seconds_count{model_name=\"m\"} 7\n"))
        // the reference's families are untouched
        let mindie = PrometheusAggregation.aggregate([(a, 1, false), (a, 1, false)], instances: ["0", "1"], overrides: [:])
        #expect(!mindie.contains("instance="))
    }

    @Test("a sample that already carries an instance label takes the max, not the sum")
    func alreadyLabelled() {
        let t = { (v: Int) in "# TYPE x_start_time_seconds gauge\nx_start_time_seconds{instance=\"a\"} \(v)\n" }
        let out = PrometheusAggregation.aggregate([(t(5), 1, false), (t(9), 1, false)], overrides: [:])
        #expect(out == "# TYPE x_start_time_seconds gauge\nx_start_time_seconds{instance=\"a\"} 9\n")
    }

    @Test("every family of the Coordinator's own gets a # HELP line; existing ones are kept")
    func helpLines() {
        let text = "# TYPE mindie_coordinator_retries_total counter\nmindie_coordinator_retries_total 0\n"
            + "# HELP other_total Given.\n# TYPE other_total counter\nother_total 1\n# TYPE new_metric gauge\nnew_metric 2\n"
        let out = String(decoding: CoordinatorMetrics.withHelp(Array(text.utf8)), as: UTF8.self)
        #expect(out == "# HELP mindie_coordinator_retries_total Requests retried on another instance before their first byte.\n" + text
            .replacingOccurrences(of: "# TYPE new_metric", with: "# HELP new_metric new_metric of the MindIE-MS Coordinator.\n# TYPE new_metric"))
        #expect(CoordinatorMetrics.withHelp([]) == [])
    }
}
