import Testing
@testable import Gateway

@Suite("Prometheus aggregation (spec §7)")
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
}
