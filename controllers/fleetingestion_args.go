package controllers

import "fmt"

// Where the pods find their inputs. Every input that is a secret arrives as a mounted file,
// never as an argument or environment variable, so it does not show in `ps` or in the
// Deployment.
const (
	httpPort     = 8080
	httpPortName = "http"
	// metricsPort serves /metrics apart from the HTTP port, so that an Ingress, which
	// routes to the http port only, can never publish it.
	metricsPort     = 9090
	metricsPortName = "metrics"

	// The auth Secrets are mounted whole (never with subPath, which kubelet does not
	// update), and the components re-read the folders every second, so a rotated key takes
	// effect without a restart.
	deviceKeysDir = "/etc/fleetingest/auth/device"
	userKeysDir   = "/etc/fleetingest/auth/user"

	natsCredsDir  = "/etc/fleetingest/nats"
	natsCredsFile = natsCredsDir + "/creds"
	dsnDir        = "/etc/fleetingest/dsn"
	dsnFile       = dsnDir + "/dsn"
	shardDSNsDir  = "/etc/fleetingest/shards"
	tmpDir        = "/tmp"
)

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

// serveArgs are the addresses every component serves on: HTTP (API, /healthz, /readyz)
// and, on its own port, /metrics.
func serveArgs() []string {
	return []string{fmt.Sprintf("--http-addr=:%d", httpPort), fmt.Sprintf("--metrics-addr=:%d", metricsPort)}
}

// gatewayArgs are the gateway container's arguments.
func gatewayArgs(f fleet) []string {
	a := append([]string{"gateway"}, natsArgs(f)...)
	a = append(a, serveArgs()...)
	a = append(a, latenessArgs(f)...)
	return append(a, deviceAuthArgs(f)...)
}

// latenessArgs give the gateway's acceptance window (spec.gateway.maxLateness) to every
// component that checks against it: the gateway refuses older readings, ingesters refuse a
// message holding one, analytics a mapping starting before it.
func latenessArgs(f fleet) []string {
	if ml := f.Spec.Gateway.MaxLateness; ml != nil && ml.Duration > 0 {
		return []string{"--max-lateness=" + ml.Duration.String()}
	}
	return nil
}

// deviceAuthArgs say where the gateway finds the device-token verification keys.
func deviceAuthArgs(f fleet) []string {
	if f.insecureNoAuth() {
		return []string{"--insecure-no-auth"}
	}
	return []string{"--device-keys=" + deviceKeysDir}
}

// userAuthArgs say how analytics verifies user tokens: a local issuer's keys, an OIDC
// issuer, or not at all.
func userAuthArgs(f fleet) []string {
	u := f.Spec.Auth.Users
	switch {
	case f.insecureNoAuth():
		return []string{"--insecure-no-auth"}
	case u != nil && u.OIDC != nil:
		return []string{
			"--oidc-issuer-url=" + u.OIDC.IssuerURL,
			"--oidc-audience=" + valueOr(&u.OIDC.Audience, defaultOIDCAudience),
			"--oidc-roles-claim=" + valueOr(&u.OIDC.RolesClaim, defaultOIDCRolesClaim),
		}
	default:
		return []string{"--user-keys=" + userKeysDir}
	}
}

// ingesterArgs are the arguments of shard i's ingester container. They name its shard and
// not the fleet's count (an ingester reads no shard map): appending a shard then changes no
// running ingester's template, and rolls none of them.
func ingesterArgs(f fleet, shard int) []string {
	a := append([]string{"ingester"}, natsArgs(f)...)
	a = append(a,
		fmt.Sprintf("--shard=%d", shard),
		"--dsn-file="+dsnFile,
		"--history-retention="+f.historyRetention().String(),
	)
	a = append(a, latenessArgs(f)...)
	return append(a, serveArgs()...)
}

// migrateArgs are the arguments of shard i's migrate init container: it brings the shard's
// schema up to the binary's version before the ingester starts.
func migrateArgs() []string {
	return []string{"migrate", "--dsn-file=" + dsnFile}
}

// analyticsArgs are the analytics container's arguments.
func analyticsArgs(f fleet) []string {
	a := append([]string{"analytics"}, natsArgs(f)...)
	for i := range f.Spec.Shards { // repeated, in shard order
		a = append(a, "--shard-dsn-file="+shardDSNFile(i))
	}
	a = append(a, serveArgs()...)
	a = append(a, latenessArgs(f)...)
	return append(a, userAuthArgs(f)...)
}
