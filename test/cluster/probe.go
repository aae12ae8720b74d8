package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// probe watches a running container until ctx is done (it returns ""), its process exits or
// its startup or liveness probe has failed for failureThreshold × periodSeconds (it returns
// why). Readiness turns the container ready at the first success and unready after that
// long of failures.
func (p *Pod) probe(ctx context.Context, c *corev1.Container, pr *process) string {
	started := time.Now()
	startup := c.StartupProbe == nil
	var readyFailing, liveFailing time.Time
	t := time.NewTicker(p.node.cfg.ProbeInterval)
	defer t.Stop()
	for tick := 0; ; tick++ {
		select {
		case <-ctx.Done():
			return ""
		case <-pr.exited:
			p.forget(c.Name)
			return fmt.Sprintf("exited: %v", pr.err)
		case <-t.C:
		}
		if !startup {
			err := p.check(ctx, c, c.StartupProbe)
			if err == nil {
				startup = true
			} else if time.Since(started) > budget(c.StartupProbe, true) {
				return fmt.Sprintf("startup probe failed: %v", err)
			}
			p.setState("Starting; %s startup probe: %v", c.Name, err)
			continue
		}
		var err error
		if c.ReadinessProbe != nil {
			err = p.check(ctx, c, c.ReadinessProbe)
		}
		switch {
		case c.ReadinessProbe == nil:
			p.setReady(c.Name, true)
		case failing(&readyFailing, err, budget(c.ReadinessProbe, false)):
			p.setReady(c.Name, false)
		case readyFailing.IsZero():
			p.setReady(c.Name, true)
		}
		if err != nil {
			p.setState("Running; %s readiness probe: %v", c.Name, err)
		} else {
			p.setState("Running")
		}
		if c.LivenessProbe != nil && tick%5 == 0 && failing(&liveFailing, p.check(ctx, c, c.LivenessProbe), budget(c.LivenessProbe, false)) {
			return fmt.Sprintf("liveness probe failing for %s", time.Since(liveFailing).Round(time.Second))
		}
	}
}

// failing records a probe's result and reports whether it has failed for longer than
// budget; since is when the current run of failures began (zero after a success).
func failing(since *time.Time, err error, budget time.Duration) bool {
	if err == nil {
		*since = time.Time{}
		return false
	}
	if since.IsZero() {
		*since = time.Now()
	}
	return time.Since(*since) >= budget
}

// budget is how long a probe may fail before it counts: failureThreshold × periodSeconds,
// plus initialDelaySeconds for a startup probe, with the API server's defaults.
func budget(pr *corev1.Probe, withDelay bool) time.Duration {
	period, threshold := pr.PeriodSeconds, pr.FailureThreshold
	if period <= 0 {
		period = 10
	}
	if threshold <= 0 {
		threshold = 3
	}
	d := time.Duration(period*threshold) * time.Second
	if withDelay {
		d += time.Duration(pr.InitialDelaySeconds) * time.Second
	}
	return d
}

// check runs a probe once: an httpGet answered with 2xx or 3xx, or a tcpSocket that
// accepts. Other handlers are refused.
func (p *Pod) check(ctx context.Context, c *corev1.Container, pr *corev1.Probe) error {
	timeout := time.Duration(max(pr.TimeoutSeconds, 1)) * time.Second
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case pr.HTTPGet != nil:
		g := pr.HTTPGet
		scheme := "http"
		if g.Scheme == corev1.URISchemeHTTPS {
			scheme = "https"
		}
		host := g.Host
		if host == "" {
			host = "127.0.0.1"
		}
		url := fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(host, strconv.Itoa(p.probePort(c, g.Port))), g.Path)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, http.NoBody)
		if err != nil {
			return err
		}
		for _, h := range g.HTTPHeaders {
			req.Header.Set(h.Name, h.Value)
		}
		res, err := probeClient.Do(req)
		if err != nil {
			return err
		}
		_ = res.Body.Close()
		if res.StatusCode < 200 || res.StatusCode >= 400 {
			return fmt.Errorf("GET %s: %s", url, res.Status)
		}
		return nil
	case pr.TCPSocket != nil:
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p.probePort(c, pr.TCPSocket.Port))))
		if err != nil {
			return err
		}
		return conn.Close()
	default:
		return fmt.Errorf("container %s: only httpGet and tcpSocket probes are emulated", c.Name)
	}
}

// probeClient is kubelet's prober: no keep-alive, certificates not verified.
var probeClient = &http.Client{Transport: &http.Transport{
	DisableKeepAlives: true,
	TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // as kubelet's prober
}}

// probePort is the local port of a probe's port: a container port named or numbered. A
// port the pod does not declare is used as it is.
func (p *Pod) probePort(c *corev1.Container, port intstr.IntOrString) int {
	number := port.IntVal
	if port.Type == intstr.String {
		number = 0
		for _, cp := range c.Ports {
			if cp.Name == port.StrVal {
				number = cp.ContainerPort
			}
		}
	}
	if local, ok := p.localPort(number); ok {
		return local
	}
	return int(number)
}
