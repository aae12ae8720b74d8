package controllers

import "fmt"

// Where the pods find their inputs. Every input that is a secret arrives as a mounted file,
// never as an argument or environment variable, so it does not show in `ps` or in the
// Deployment.
const (
	httpPort     = 8080
	httpPortName = "http"

	slotMapDir    = "/etc/fleetingest/slotmap"
	natsCredsDir  = "/etc/fleetingest/nats"
	natsCredsFile = natsCredsDir + "/creds"
	dsnDir        = "/etc/fleetingest/dsn"
	dsnFile       = dsnDir + "/dsn"
	shardDSNsDir  = "/etc/fleetingest/shards"
	tmpDir        = "/tmp"
)

// slotMapFile is the path of the slot map inside the pods.
func slotMapFile() string { return slotMapDir + "/slotmap.json" }

// shardDSNFile is the path of shard i's DSN inside the analytics pods.
func shardDSNFile(i int) string { return fmt.Sprintf("%s/%d/dsn", shardDSNsDir, i) }

// natsArgs are the flags every component uses to reach NATS and name the fleet's objects.
func natsArgs(f fleet) []string {
	a := []string{
		"--nats-url=" + f.Spec.NATS.URL,
		"--namespace=" + f.Namespace,
		"--fleet=" + f.Name,
	}
	if f.natsCreds {
		a = append(a, "--nats-creds="+natsCredsFile)
	}
	return a
}

// gatewayArgs are the gateway container's arguments.
func gatewayArgs(f fleet) []string {
	a := append([]string{"gateway"}, natsArgs(f)...)
	a = append(a,
		"--slot-map-file="+slotMapFile(),
		fmt.Sprintf("--http-addr=:%d", httpPort),
	)
	if ml := f.Spec.Gateway.MaxLateness; ml != nil && ml.Duration > 0 {
		a = append(a, "--max-lateness="+ml.Duration.String())
	}
	return a
}

// ingesterArgs are the arguments of shard i's ingester container.
func ingesterArgs(f fleet, shard int) []string {
	a := append([]string{"ingester"}, natsArgs(f)...)
	return append(a,
		fmt.Sprintf("--shards=%d", len(f.Spec.Shards)),
		fmt.Sprintf("--shard=%d", shard),
		"--dsn-file="+dsnFile,
		fmt.Sprintf("--http-addr=:%d", httpPort),
		"--history-retention="+f.historyRetention().String(),
	)
}

// migrateArgs are the arguments of shard i's migrate init container: it brings the shard's
// schema up to the binary's version before the ingester starts.
func migrateArgs() []string {
	return []string{"migrate", "--dsn-file=" + dsnFile}
}

// analyticsArgs are the analytics container's arguments.
func analyticsArgs(f fleet) []string {
	a := append([]string{"analytics"}, natsArgs(f)...)
	a = append(a, "--slot-map-file="+slotMapFile())
	for i := range f.Spec.Shards { // repeated, in shard order
		a = append(a, "--shard-dsn-file="+shardDSNFile(i))
	}
	return append(a, fmt.Sprintf("--http-addr=:%d", httpPort))
}
