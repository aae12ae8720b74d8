package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/fleetingest/fleetingest/internal/freeport"
)

// Pod is one pod of a Deployment running on a Node: its volumes in a folder, its
// containers as processes.
type Pod struct {
	// Name, Namespace and Deployment name the pod and the Deployment it belongs to.
	Name, Namespace, Deployment string
	// TemplateHash identifies the pod template it runs.
	TemplateHash string
	// UID is the pod's made-up uid (metadata.uid).
	UID types.UID

	node     *Node
	seq      int
	template corev1.PodTemplateSpec
	dir      string
	// ports maps each declared container port to the local port the pod got for it (under
	// mu).
	ports map[int32]int
	// volumes are the Secret and ConfigMap volumes as last written, by volume name.
	volumes map[string]map[string]file

	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	ready    map[string]bool // main container name → readiness
	state    string
	restarts int
	pids     map[string]int
}

func newPod(n *Node, d *appsv1.Deployment, hash string, seq int) *Pod {
	name := fmt.Sprintf("%s-%s-%05x", d.Name, hash, seq)
	return &Pod{
		Name: name, Namespace: d.Namespace, Deployment: d.Name, TemplateHash: hash,
		UID:  types.UID(fmt.Sprintf("00000000-0000-0000-0000-%012x", seq)),
		node: n, seq: seq, template: *d.Spec.Template.DeepCopy(),
		dir:     filepath.Join(n.cfg.Dir, d.Namespace, name),
		ports:   map[int32]int{},
		volumes: map[string]map[string]file{},
		done:    make(chan struct{}),
		ready:   map[string]bool{},
		pids:    map[string]int{},
		state:   "Pending",
	}
}

// Ready is true when every main container's readiness probe passes (or it has none and
// runs).
func (p *Pod) Ready() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.template.Spec.Containers {
		if !p.ready[p.template.Spec.Containers[i].Name] {
			return false
		}
	}
	return true
}

// Port is the local port the pod got for a declared container port (0 when not declared
// or not admitted yet).
func (p *Pod) Port(containerPort int32) int {
	port, _ := p.localPort(containerPort)
	return port
}

func (p *Pod) localPort(containerPort int32) (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	port, ok := p.ports[containerPort]
	return port, ok
}

// URL is http://127.0.0.1:<port> for the pod's container port of that name.
func (p *Pod) URL(portName string) string {
	for _, c := range allContainers(&p.template.Spec) {
		for _, cp := range c.Ports {
			if cp.Name == portName {
				return fmt.Sprintf("http://127.0.0.1:%d", p.Port(cp.ContainerPort))
			}
		}
	}
	return ""
}

// Restarts counts the main containers' restarts.
func (p *Pod) Restarts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.restarts
}

// PID is the process id of a running container (0 when it does not run).
func (p *Pod) PID(container string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pids[container]
}

// Template is the pod template the pod runs.
func (p *Pod) Template() corev1.PodTemplateSpec { return *p.template.DeepCopy() }

// Done is closed once every process of a stopped pod has exited.
func (p *Pod) Done() <-chan struct{} { return p.done }

func (p *Pod) setState(format string, args ...any) {
	p.mu.Lock()
	p.state = fmt.Sprintf(format, args...)
	p.mu.Unlock()
}

func (p *Pod) setReady(container string, ready bool) {
	p.mu.Lock()
	p.ready[container] = ready
	p.mu.Unlock()
}

func (p *Pod) describe() string {
	p.mu.Lock()
	state, restarts := p.state, p.restarts
	p.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "pod %s/%s (template %s): %s, ready %v, %d restart(s)\n", p.Namespace, p.Name, p.TemplateHash, state, p.Ready(), restarts)
	logs, _ := filepath.Glob(filepath.Join(p.dir, "logs", "*.log"))
	sort.Strings(logs)
	for _, l := range logs {
		data, _ := os.ReadFile(l)
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > 25 {
			lines = lines[len(lines)-25:]
		}
		fmt.Fprintf(&b, "  --- %s\n", filepath.Base(l))
		for _, line := range lines {
			fmt.Fprintf(&b, "  %s\n", line)
		}
	}
	return b.String()
}

// run takes the pod through kubelet's steps until ctx is done: admission, volumes, init
// containers in order, then the main containers, each kept running and probed.
func (p *Pod) run(ctx context.Context) {
	defer close(p.done)
	if !p.until(ctx, "admitting", p.admit) || !p.until(ctx, "mounting volumes", p.mountVolumes) {
		return
	}
	go p.refreshVolumes(ctx)
	for i := range p.template.Spec.InitContainers {
		c := &p.template.Spec.InitContainers[i]
		if !p.until(ctx, "init container "+c.Name, func(ctx context.Context) error { return p.runToCompletion(ctx, c) }) {
			return
		}
	}
	var wg sync.WaitGroup
	for i := range p.template.Spec.Containers {
		c := &p.template.Spec.Containers[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.keepRunning(ctx, c)
		}()
	}
	wg.Wait()
	p.setState("Stopped")
}

// until runs step until it succeeds, with backoff, and reports false when ctx ended first.
func (p *Pod) until(ctx context.Context, what string, step func(context.Context) error) bool {
	for attempt := 0; ; attempt++ {
		err := step(ctx)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		p.setState("waiting: %s: %v", what, err)
		p.node.cfg.Log.Info("pod waiting", "pod", p.Namespace+"/"+p.Name, "step", what, "err", err)
		if !sleep(ctx, backoff(attempt)) {
			return false
		}
	}
}

// backoff is kubelet's crash-loop backoff, scaled down: 250ms doubling up to 5s.
func backoff(attempt int) time.Duration {
	d := 250 * time.Millisecond << min(attempt, 5)
	return min(d, 5*time.Second)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// admit checks what the API server's admission and kubelet check before a pod runs: its
// ServiceAccount and PriorityClass exist, its images are on the node, and runAsNonRoot
// holds. It also picks the pod's local ports.
func (p *Pod) admit(ctx context.Context) error {
	spec := &p.template.Spec
	c := p.node.cfg.Client
	if sa := spec.ServiceAccountName; sa != "" && sa != "default" {
		if err := c.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: sa}, &corev1.ServiceAccount{}); err != nil {
			return fmt.Errorf("service account %s: %w", sa, err)
		}
	}
	if pc := spec.PriorityClassName; pc != "" {
		if err := c.Get(ctx, types.NamespacedName{Name: pc}, &schedulingv1.PriorityClass{}); err != nil {
			return fmt.Errorf("priority class %s: %w", pc, err)
		}
	}
	for _, ctr := range allContainers(spec) {
		img, ok := p.node.cfg.Images[ctr.Image]
		if !ok {
			return fmt.Errorf("container %s: image %q is not on the node (ErrImagePull)", ctr.Name, ctr.Image)
		}
		if len(ctr.Command) > 0 {
			return fmt.Errorf("container %s: command %v: the node runs only an image's entrypoint", ctr.Name, ctr.Command)
		}
		if uid, _ := p.user(ctr, img); uid == 0 && runAsNonRoot(spec, ctr) {
			return fmt.Errorf("container %s has runAsNonRoot and would run as root (CreateContainerConfigError)", ctr.Name)
		}
	}
	for _, ctr := range allContainers(spec) {
		for _, cp := range ctr.Ports {
			if _, ok := p.localPort(cp.ContainerPort); ok {
				continue
			}
			port, err := freeport.On("127.0.0.1")
			if err != nil {
				return err
			}
			p.mu.Lock()
			p.ports[cp.ContainerPort] = port
			p.mu.Unlock()
		}
	}
	return nil
}

// allContainers are a pod's init and main containers, in that order.
func allContainers(spec *corev1.PodSpec) []*corev1.Container {
	out := make([]*corev1.Container, 0, len(spec.InitContainers)+len(spec.Containers))
	for i := range spec.InitContainers {
		out = append(out, &spec.InitContainers[i])
	}
	for i := range spec.Containers {
		out = append(out, &spec.Containers[i])
	}
	return out
}

func runAsNonRoot(spec *corev1.PodSpec, c *corev1.Container) bool {
	if c.SecurityContext != nil && c.SecurityContext.RunAsNonRoot != nil {
		return *c.SecurityContext.RunAsNonRoot
	}
	return spec.SecurityContext != nil && ptr.Deref(spec.SecurityContext.RunAsNonRoot, false)
}

// user is the uid and gid a container runs as: its own security context's, the pod's, or
// the image's.
func (p *Pod) user(c *corev1.Container, img Image) (uid, gid int64) {
	uid, gid = img.UID, img.GID
	if sc := p.template.Spec.SecurityContext; sc != nil {
		uid, gid = ptr.Deref(sc.RunAsUser, uid), ptr.Deref(sc.RunAsGroup, gid)
	}
	if sc := c.SecurityContext; sc != nil {
		uid, gid = ptr.Deref(sc.RunAsUser, uid), ptr.Deref(sc.RunAsGroup, gid)
	}
	return uid, gid
}

// process is a started container process; exited is closed once it has been waited for,
// with its exit error in err.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

func wait(cmd *exec.Cmd) *process {
	pr := &process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		pr.err = cmd.Wait()
		close(pr.exited)
	}()
	return pr
}

// runToCompletion runs an init container and fails unless it exits 0.
func (p *Pod) runToCompletion(ctx context.Context, c *corev1.Container) error {
	cmd, err := p.startContainer(ctx, c)
	if err != nil {
		return err
	}
	pr := wait(cmd)
	select {
	case <-pr.exited:
		p.forget(c.Name)
		if pr.err != nil {
			return fmt.Errorf("exited: %w (see logs/%s.log)", pr.err, c.Name)
		}
		return nil
	case <-ctx.Done():
		p.terminate(pr)
		return ctx.Err()
	}
}

// keepRunning runs a main container, probes it and restarts it with backoff when it exits
// or its startup or liveness probe fails, until ctx is done.
func (p *Pod) keepRunning(ctx context.Context, c *corev1.Container) {
	for attempt := 0; ; attempt++ {
		cmd, err := p.startContainer(ctx, c)
		if err != nil {
			p.setState("waiting: container %s: %v", c.Name, err)
		} else {
			pr := wait(cmd)
			why := p.probe(ctx, c, pr)
			p.setReady(c.Name, false)
			p.terminate(pr)
			if ctx.Err() != nil {
				return
			}
			p.node.cfg.Log.Warn("restarting container", "pod", p.Namespace+"/"+p.Name, "container", c.Name, "why", why)
			p.mu.Lock()
			p.restarts++
			p.mu.Unlock()
			p.setState("restarting %s: %s", c.Name, why)
		}
		if !sleep(ctx, backoff(attempt)) {
			return
		}
	}
}

// startContainer starts a container's process: the image's executable with the
// container's arguments, environment and user, in its root folder, its output appended to
// logs/<container>.log.
func (p *Pod) startContainer(ctx context.Context, c *corev1.Container) (*exec.Cmd, error) {
	img := p.node.cfg.Images[c.Image]
	env, err := p.environment(ctx, c)
	if err != nil {
		return nil, err
	}
	root := p.rootfs(c.Name)
	args := p.rewrite(c, expandAll(c.Args, env.lookup))
	cmd := exec.Command(img.Executable, args...)
	cmd.Env = env.list(root)
	cmd.Dir = filepath.Join(root, c.WorkingDir)
	logs := filepath.Join(p.dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return nil, err
	}
	out, err := os.OpenFile(filepath.Join(logs, c.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	fmt.Fprintf(out, "=== %s %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() == 0 {
		uid, gid := p.user(c, img)
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: p.groups()}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", c.Name, err)
	}
	p.mu.Lock()
	p.pids[c.Name] = cmd.Process.Pid
	p.mu.Unlock()
	return cmd, nil
}

// groups are the supplementary groups of the pod's processes: fsGroup and
// supplementalGroups.
func (p *Pod) groups() []uint32 {
	sc := p.template.Spec.SecurityContext
	if sc == nil {
		return nil
	}
	var g []uint32
	if sc.FSGroup != nil {
		g = append(g, uint32(*sc.FSGroup))
	}
	for _, s := range sc.SupplementalGroups {
		g = append(g, uint32(s))
	}
	return g
}

func (p *Pod) forget(container string) {
	p.mu.Lock()
	delete(p.pids, container)
	p.mu.Unlock()
}

// terminate stops a container's process group as kubelet does: SIGTERM, then SIGKILL after
// the grace period.
func (p *Pod) terminate(pr *process) {
	grace := time.Duration(ptr.Deref(p.template.Spec.TerminationGracePeriodSeconds, 30)) * time.Second
	grace = min(grace, p.node.cfg.MaxGracePeriod)
	pid := pr.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-pr.exited:
	case <-time.After(grace):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-pr.exited
		p.node.cfg.Log.Warn("container killed after its grace period", "pod", p.Namespace+"/"+p.Name, "grace", grace)
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL) // anything the process left behind
	for name, running := range p.pidsSnapshot() {
		if running == pid {
			p.forget(name)
		}
	}
}

func (p *Pod) pidsSnapshot() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.pids))
	for k, v := range p.pids {
		out[k] = v
	}
	return out
}
