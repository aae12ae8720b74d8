package main

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
)

// rows are the dashboard's sections, in the order readings travel.
func rows() []row {
	return []row{gatewayRow(), streamsRow(), ingesterRow(), analyticsRow(), readinessRow()}
}

func gatewayRow() row {
	return row{title: "Gateway", panels: []panel{
		{
			title:       "Ingest rate",
			description: "Readings acknowledged by JetStream and answered 2xx, per second, by kind.",
			unit:        "short", stacked: true,
			queries: []query{{expr: rate("fleetingest_gateway_readings_accepted_total", "kind"), legend: "{{kind}}"}},
		},
		{
			title:       "Accept latency",
			description: "Time from publishing a stream message to JetStream's acknowledgement (PubAck): what a 202 waits for, after a linger of a millisecond or two.",
			unit:        "s",
			queries:     p50p99("fleetingest_gateway_publish_duration_seconds", "", ""),
		},
		{
			title:       "Answers by status code",
			description: "HTTP requests answered per second, by status code (499: the client went away; 503: NATS unavailable or a stream full).",
			unit:        "reqps", stacked: true,
			queries: []query{{expr: rate("fleetingest_gateway_requests_total", "code"), legend: "{{code}}"}},
		},
		{
			title:       "Rejected readings by reason",
			description: "Readings refused per second: malformed (400), implausible (422), too_large (413), permission_denied (403), unavailable (503); and requests refused 401 for their device token.",
			unit:        "short", stacked: true,
			queries: []query{
				{expr: rate("fleetingest_gateway_readings_rejected_total", "reason"), legend: "{{reason}}"},
				{expr: rate("fleetingest_gateway_unauthenticated_total", "reason"), legend: "401 {{reason}}"},
			},
		},
		{
			title:       "Readings per stream message",
			description: "How many readings the gateway coalesced into one stream message (one fsync).",
			unit:        "short",
			queries:     p50p99("fleetingest_gateway_readings_per_message", "", ""),
		},
		{
			title:       "Publish failures and queues",
			description: "Stream messages JetStream did not acknowledge per second (NATS down, stream full, timeout), and readings waiting in each shard's queue of the gateway.",
			unit:        "short",
			queries: []query{
				{expr: rate("fleetingest_gateway_publish_failures_total", "pod"), legend: "failures {{pod}}"},
				{expr: fmt.Sprintf("sum by (shard) (fleetingest_gateway_queue_depth{%s})", fleetSel), legend: "queued, shard {{shard}}"},
			},
		},
	}}
}

func streamsRow() row {
	return row{title: "Streams (per shard)", panels: []panel{
		{
			title:       "Stream bytes",
			description: "Bytes held by each shard's stream, as the operator last observed them (every resync). A stream at its MaxBytes refuses new readings: the gateway answers 503.",
			unit:        "bytes", width: 12,
			queries: []query{{expr: fmt.Sprintf("max by (shard) (fleetingest_operator_stream_bytes{%s})", fleetSel), legend: "shard {{shard}}"}},
		},
		{
			title:       "Consumer lag",
			description: "Messages of each shard's stream not yet acknowledged by its ingester (pending plus in flight), as the ingester polls it, and as the operator last observed it at its resync (which still shows while the ingester is down).",
			unit:        "short", width: 12,
			queries: []query{
				{expr: fmt.Sprintf("max by (shard) (fleetingest_ingester_consumer_lag_messages{%s})", fleetSel), legend: "shard {{shard}}"},
				{expr: fmt.Sprintf("max by (shard) (fleetingest_operator_consumer_lag_messages{%s})", fleetSel), legend: "shard {{shard}} (operator)"},
			},
		},
	}}
}

func ingesterRow() row {
	return row{title: "Ingesters", panels: []panel{
		{
			title:       "Commit latency",
			description: "Time to write and commit one batch, by shard.",
			unit:        "s",
			queries:     p50p99("fleetingest_ingester_commit_seconds", ", shard", " shard {{shard}}"),
		},
		{
			title:       "Rows written",
			description: "History rows inserted per second by kind, and readings skipped because they were already stored (redeliveries, device retries).",
			unit:        "short",
			queries: []query{
				{expr: rate("fleetingest_ingester_rows_inserted_total", "kind"), legend: "inserted {{kind}}"},
				{expr: rate("fleetingest_ingester_duplicates_skipped_total", "kind"), legend: "duplicate {{kind}}"},
			},
		},
		{
			title:       "Write errors",
			description: "Failed attempts to write a batch per second, by shard (retried with back-off), and batches the database refused for good, split to find the refused readings.",
			unit:        "short",
			queries: []query{
				{expr: rate("fleetingest_ingester_write_errors_total", "shard"), legend: "errors, shard {{shard}}"},
				{expr: rate("fleetingest_ingester_batches_split_total", "shard"), legend: "splits, shard {{shard}}"},
			},
		},
		{
			kind:        statPanel,
			title:       "Dead letters in the time range",
			description: "Readings parked in the fleet's dead-letter stream over the dashboard's time range. Any is worth a look: fleetingest deadletter list, then replay once the cause is fixed.",
			unit:        "short", redAt: cog.ToPtr(1.0),
			queries: []query{{expr: rangeIncrease("fleetingest_ingester_readings_parked_total"), instant: true}},
		},
		{
			title:       "Dead letters",
			description: "Readings parked per second by shard and kind, and failed attempts to park them (the shard waits until parking succeeds).",
			unit:        "short", width: 16,
			queries: []query{
				{expr: rate("fleetingest_ingester_readings_parked_total", "shard, kind"), legend: "parked, shard {{shard}} {{kind}}"},
				{expr: rate("fleetingest_ingester_park_errors_total", "shard"), legend: "park errors, shard {{shard}}"},
			},
		},
	}}
}

func analyticsRow() row {
	return row{title: "Analytics", panels: []panel{
		{
			title:       "Request latency",
			description: "Duration of analytics calls (Connect, gRPC and REST alike), by procedure.",
			unit:        "s",
			queries:     p50p99("fleetingest_analytics_request_duration_seconds", ", procedure", " {{procedure}}"),
		},
		{
			title:       "Requests by code",
			description: "Analytics calls per second by Connect code, and shard queries that failed or timed out.",
			unit:        "reqps", stacked: true,
			queries: []query{
				{expr: rate("fleetingest_analytics_request_duration_seconds_count", "code"), legend: "{{code}}"},
				{expr: rate("fleetingest_analytics_shard_failures_total", "pod"), legend: "shard failures {{pod}}"},
			},
		},
		{
			title:       "Answered from memory or Postgres",
			description: "Shard parts of questions per second by where they were answered: memory (every hour held) or Postgres.",
			unit:        "short", stacked: true, width: 5,
			queries: []query{{expr: rate("fleetingest_analytics_reads_total", "source"), legend: "{{source}}"}},
		},
		{
			kind:        statPanel,
			title:       "From memory",
			description: "Share of shard parts of questions answered from memory over the time range.",
			unit:        "percentunit", width: 3,
			queries: []query{{
				expr: fmt.Sprintf(`sum(increase(fleetingest_analytics_reads_total{%s, source="memory"}[$__range])) / sum(increase(fleetingest_analytics_reads_total{%s}[$__range]))`,
					fleetSel, fleetSel),
				instant: true,
			}},
		},
	}}
}

func readinessRow() row {
	up := fmt.Sprintf("up{%s, %s}", fleetJob, fleetSel)
	return row{title: "Readiness", panels: []panel{
		{
			title:       "Ready pods",
			description: "Pods of each component that are ready (kube-state-metrics' kube_pod_status_ready), beside the pods Prometheus scrapes.",
			unit:        "short", width: 12,
			queries: []query{
				{
					expr:   fmt.Sprintf(`sum by (component) (kube_pod_status_ready{condition="true"} * on (namespace, pod) group_left (component) group by (namespace, pod, component) (%s))`, up),
					legend: "{{component}} ready",
				},
				{expr: fmt.Sprintf("count by (component) (%s)", up), legend: "{{component}} pods"},
			},
		},
		{
			title:       "Scraped",
			description: "Whether Prometheus reaches each pod's metrics port (0: the process is down, or a NetworkPolicy does not admit Prometheus: spec.networkPolicy.metricsFrom).",
			unit:        "short", width: 12,
			queries: []query{{expr: up, legend: "{{pod}}"}},
		},
	}}
}
