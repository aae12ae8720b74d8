package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The emulated node's name, pod and host address, and allocatable memory (what a
// resourceFieldRef gives for a limit that is not set).
const (
	nodeName          = "emulated-node"
	podIP             = "127.0.0.1"
	allocatableMemory = "8Gi"
)

// The image's own environment (distroless nonroot's), and where a mounted ServiceAccount
// token's kubeconfig goes.
var imageEnv = [][2]string{{"PATH", "/usr/local/bin:/usr/bin:/bin"}, {"HOME", "/home/nonroot"}, {"TMPDIR", "/tmp"}}

const serviceAccountKubeconfig = "/var/run/secrets/kubernetes.io/serviceaccount/kubeconfig"

// env is a container's environment in definition order.
type env struct {
	names  []string
	values map[string]string
}

func (e *env) set(name, value string) {
	if _, ok := e.values[name]; !ok {
		e.names = append(e.names, name)
	}
	e.values[name] = value
}

func (e *env) lookup(name string) (string, bool) {
	v, ok := e.values[name]
	return v, ok
}

// list is the environment as a process gets it, every absolute path but PATH's taken under
// the container's root.
func (e *env) list(root string) []string {
	out := make([]string, 0, len(e.names))
	for _, n := range e.names {
		v := e.values[n]
		if n != "PATH" && strings.HasPrefix(v, "/") {
			v = filepath.Join(root, v)
		}
		out = append(out, n+"="+v)
	}
	return out
}

// environment resolves a container's environment as kubelet does at its start: the image's,
// KUBECONFIG for a mounted ServiceAccount token, envFrom, then env in order with
// valueFrom and $(VAR) references to variables defined before.
func (p *Pod) environment(ctx context.Context, c *corev1.Container) (*env, error) {
	e := &env{values: map[string]string{}}
	for _, kv := range imageEnv {
		e.set(kv[0], kv[1])
	}
	if p.mountsServiceAccountToken() {
		e.set("KUBECONFIG", serviceAccountKubeconfig)
	}
	for _, from := range c.EnvFrom {
		data, err := p.envFromData(ctx, from)
		if err != nil {
			return nil, err
		}
		for k, v := range data {
			e.set(from.Prefix+k, v)
		}
	}
	for _, v := range c.Env {
		if v.ValueFrom == nil {
			e.set(v.Name, expand(v.Value, e.lookup))
			continue
		}
		value, ok, err := p.valueFrom(ctx, c, v.ValueFrom)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", v.Name, err)
		}
		if ok {
			e.set(v.Name, value)
		}
	}
	return e, nil
}

func (p *Pod) mountsServiceAccountToken() bool {
	return ptr.Deref(p.template.Spec.AutomountServiceAccountToken, true) && p.node.cfg.ServiceAccountKubeconfig != nil
}

func (p *Pod) envFromData(ctx context.Context, from corev1.EnvFromSource) (map[string]string, error) {
	out := map[string]string{}
	switch {
	case from.SecretRef != nil:
		var s corev1.Secret
		if err := p.get(ctx, from.SecretRef.Name, &s, ptr.Deref(from.SecretRef.Optional, false)); err != nil {
			return nil, err
		}
		for k, v := range s.Data {
			out[k] = string(v)
		}
	case from.ConfigMapRef != nil:
		var cm corev1.ConfigMap
		if err := p.get(ctx, from.ConfigMapRef.Name, &cm, ptr.Deref(from.ConfigMapRef.Optional, false)); err != nil {
			return nil, err
		}
		for k, v := range cm.Data {
			out[k] = v
		}
	}
	return out, nil
}

// valueFrom resolves one env var's source; ok is false for an optional one that is absent.
func (p *Pod) valueFrom(ctx context.Context, c *corev1.Container, src *corev1.EnvVarSource) (value string, ok bool, err error) {
	switch {
	case src.FieldRef != nil:
		value, err = p.fieldValue(src.FieldRef.FieldPath)
		return value, err == nil, err
	case src.ResourceFieldRef != nil:
		value, err = p.resourceValue(c, src.ResourceFieldRef)
		return value, err == nil, err
	case src.SecretKeyRef != nil:
		ref := src.SecretKeyRef
		var s corev1.Secret
		if err := p.get(ctx, ref.Name, &s, ptr.Deref(ref.Optional, false)); err != nil {
			return "", false, err
		}
		v, found := s.Data[ref.Key]
		if !found && !ptr.Deref(ref.Optional, false) {
			return "", false, fmt.Errorf("secret %s has no key %s", ref.Name, ref.Key)
		}
		return string(v), found, nil
	case src.ConfigMapKeyRef != nil:
		ref := src.ConfigMapKeyRef
		var cm corev1.ConfigMap
		if err := p.get(ctx, ref.Name, &cm, ptr.Deref(ref.Optional, false)); err != nil {
			return "", false, err
		}
		v, found := cm.Data[ref.Key]
		if !found && !ptr.Deref(ref.Optional, false) {
			return "", false, fmt.Errorf("config map %s has no key %s", ref.Name, ref.Key)
		}
		return v, found, nil
	}
	return "", false, fmt.Errorf("an env source the node does not know: %+v", src)
}

// get reads an object of the pod's namespace; an optional one that is missing reads as
// empty.
func (p *Pod) get(ctx context.Context, name string, obj client.Object, optional bool) error {
	err := p.node.cfg.Client.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: name}, obj)
	if err == nil || (optional && apierrors.IsNotFound(err)) {
		return nil
	}
	return fmt.Errorf("reading %s: %w", name, err)
}

var fieldLabel = regexp.MustCompile(`^metadata\.(labels|annotations)\['(.+)'\]$`)

// fieldValue is what the downward API gives for a fieldRef.
func (p *Pod) fieldValue(path string) (string, error) {
	switch path {
	case "metadata.name":
		return p.Name, nil
	case "metadata.namespace":
		return p.Namespace, nil
	case "metadata.uid":
		return string(p.UID), nil
	case "spec.nodeName":
		return nodeName, nil
	case "spec.serviceAccountName":
		if sa := p.template.Spec.ServiceAccountName; sa != "" {
			return sa, nil
		}
		return "default", nil
	case "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs":
		return podIP, nil
	}
	if m := fieldLabel.FindStringSubmatch(path); m != nil {
		if m[1] == "labels" {
			return p.template.Labels[m[2]], nil
		}
		return p.template.Annotations[m[2]], nil
	}
	return "", fmt.Errorf("fieldRef %s is not one the downward API gives", path)
}

// resourceValue is what the downward API gives for a resourceFieldRef: a limit or request
// of a container divided by the divisor, rounded up; a limit not set is the node's
// allocatable amount.
func (p *Pod) resourceValue(c *corev1.Container, ref *corev1.ResourceFieldSelector) (string, error) {
	if ref.ContainerName != "" {
		for _, other := range allContainers(&p.template.Spec) {
			if other.Name == ref.ContainerName {
				c = other
			}
		}
	}
	kind, name, found := strings.Cut(ref.Resource, ".")
	if !found || (kind != "limits" && kind != "requests") || (name != "cpu" && name != "memory") {
		return "", fmt.Errorf("resourceFieldRef %s is not emulated (limits or requests of cpu or memory)", ref.Resource)
	}
	list := c.Resources.Limits
	if kind == "requests" {
		list = c.Resources.Requests
	}
	q, set := list[corev1.ResourceName(name)]
	if !set && kind == "limits" {
		q = resource.MustParse(allocatableMemory)
		if name == "cpu" {
			q = *resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI)
		}
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	if name == "cpu" {
		return strconv.FormatInt(ceilDiv(q.MilliValue(), divisor.MilliValue()), 10), nil
	}
	return strconv.FormatInt(ceilDiv(q.Value(), divisor.Value()), 10), nil
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// expand replaces $(NAME) by the value of a variable defined so far, as kubelet does in env
// values, commands and arguments: "$$" is a literal "$", an unknown $(NAME) stays as it is.
func expand(s string, lookup func(string) (string, bool)) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			ref := s[i : i+3+end]
			if v, ok := lookup(s[i+2 : i+2+end]); ok {
				b.WriteString(v)
			} else {
				b.WriteString(ref)
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

func expandAll(args []string, lookup func(string) (string, bool)) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = expand(a, lookup)
	}
	return out
}

// listenAddress matches an address a server listens on: any or local host, and a port.
var listenAddress = regexp.MustCompile(`^(|0\.0\.0\.0|127\.0\.0\.1|localhost|\[::\]|::):(\d+)$`)

// rewrite adapts a container's arguments to the machine: the value of each argument (the
// part after "=" of a --flag=value, or a whole argument) that is an address of a declared
// container port becomes 127.0.0.1 and the pod's local port for it, and one that is an
// absolute path is taken under the container's root.
func (p *Pod) rewrite(c *corev1.Container, args []string) []string {
	root := p.rootfs(c.Name)
	out := make([]string, len(args))
	for i, a := range args {
		prefix, value := "", a
		if strings.HasPrefix(a, "-") {
			k := strings.IndexByte(a, '=')
			if k < 0 {
				out[i] = a
				continue
			}
			prefix, value = a[:k+1], a[k+1:]
		}
		if m := listenAddress.FindStringSubmatch(value); m != nil {
			if port, err := strconv.ParseInt(m[2], 10, 32); err == nil {
				if local, ok := p.localPort(int32(port)); ok {
					value = fmt.Sprintf("127.0.0.1:%d", local)
				}
			}
		} else if strings.HasPrefix(value, "/") {
			value = filepath.Join(root, value)
		}
		out[i] = prefix + value
	}
	return out
}

// rootfs is a container's root folder.
func (p *Pod) rootfs(container string) string {
	return filepath.Join(p.dir, "rootfs", container)
}
