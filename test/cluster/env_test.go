package cluster

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestExpandFollowsKubeletsRules(t *testing.T) {
	vars := map[string]string{"POD_NAMESPACE": "fleetingest-system", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	for _, tc := range []struct{ in, want string }{
		{"--leader-election-namespace=$(POD_NAMESPACE)", "--leader-election-namespace=fleetingest-system"},
		{"$(UNKNOWN) stays", "$(UNKNOWN) stays"},
		{"$$(POD_NAMESPACE) is escaped", "$(POD_NAMESPACE) is escaped"},
		{"a$(EMPTY)b", "ab"},
		{"unterminated $(POD", "unterminated $(POD"},
		{"a lone $ and a trailing $", "a lone $ and a trailing $"},
	} {
		if got := expand(tc.in, lookup); got != tc.want {
			t.Errorf("expand(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRewriteTakesPathsUnderTheRootAndDeclaredPortsToLocalOnes(t *testing.T) {
	p := &Pod{dir: "/pods/ns/pod-1", ports: map[int32]int{8080: 40001, 9090: 40002}}
	c := &corev1.Container{Name: "gateway"}
	got := p.rewrite(c, []string{
		"gateway", "--http-addr=:8080", "--metrics-addr=0.0.0.0:9090", "--other-addr=:7070",
		"--slot-map-file=/etc/fleetingest/slotmap/slotmap.json", "--nats-url=nats://127.0.0.1:4222", "/a/positional", "--flag",
	})
	want := []string{
		"gateway", "--http-addr=127.0.0.1:40001", "--metrics-addr=127.0.0.1:40002", "--other-addr=:7070",
		"--slot-map-file=/pods/ns/pod-1/rootfs/gateway/etc/fleetingest/slotmap/slotmap.json", "--nats-url=nats://127.0.0.1:4222",
		"/pods/ns/pod-1/rootfs/gateway/a/positional", "--flag",
	}
	if !slices.Equal(got, want) {
		t.Errorf("rewrite =\n%q\nwant\n%q", got, want)
	}
}

func TestResourceFieldRefs(t *testing.T) {
	c := &corev1.Container{Name: "gateway", Resources: corev1.ResourceRequirements{
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi"), corev1.ResourceCPU: resource.MustParse("1500m")},
		Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
	}}
	p := &Pod{template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{*c}}}}
	for _, tc := range []struct {
		ref  corev1.ResourceFieldSelector
		want string
	}{
		{corev1.ResourceFieldSelector{Resource: "limits.memory"}, "268435456"},
		{corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}, "256"},
		{corev1.ResourceFieldSelector{Resource: "requests.memory", Divisor: resource.MustParse("1Mi")}, "64"},
		{corev1.ResourceFieldSelector{Resource: "limits.cpu"}, "2"}, // rounded up
		{corev1.ResourceFieldSelector{Resource: "limits.cpu", Divisor: resource.MustParse("1m")}, "1500"},
	} {
		got, err := p.resourceValue(c, &tc.ref)
		if err != nil || got != tc.want {
			t.Errorf("%s / %s = %q, %v; want %s", tc.ref.Resource, tc.ref.Divisor.String(), got, err, tc.want)
		}
	}
}
