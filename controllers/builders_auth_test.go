package controllers

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/utils/ptr"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
)

// The auth Secrets are mounted whole and read-only: kubelet swaps a changed Secret in place
// (it never updates a subPath mount), and the components re-read the folder.
func TestAuthSecretsAreMountedWholeAndReadOnly(t *testing.T) {
	cases := []struct {
		name   string
		pod    func(fleet) podSpec
		mod    func(*v1alpha1.FleetIngestion)
		volume string
		secret string // "" when no such volume is wanted
		dir    string
	}{
		{"the gateway mounts the device keys", gatewayPod, nil, "device-keys", "device-keys", "/etc/fleetingest/auth/device"},
		{"analytics mounts a local issuer's user keys", analyticsPod, nil, "user-keys", "user-keys", "/etc/fleetingest/auth/user"},
		{"analytics with an OIDC issuer mounts no user keys", analyticsPod, withOIDC("", ""), "user-keys", "", ""},
		{"insecureNoAuth mounts no device keys", gatewayPod, withoutAuth, "device-keys", "", ""},
		{"insecureNoAuth mounts no user keys", analyticsPod, withoutAuth, "user-keys", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var mods []func(*v1alpha1.FleetIngestion)
			if tc.mod != nil {
				mods = append(mods, tc.mod)
			}
			f := newFleet(t, 2, mods...)
			tpl := podTemplate(f, tc.pod(f))
			vol := findVolume(tpl.Spec.Volumes, tc.volume)
			mount := findMount(tpl.Spec.Containers[0].VolumeMounts, tc.volume)
			if tc.secret == "" {
				if vol != nil || mount != nil {
					t.Fatalf("volume %s = %+v mounted at %+v, want none", tc.volume, vol, mount)
				}
				return
			}
			if vol == nil || vol.Secret == nil || ptr.Deref(vol.Secret.SecretName, "") != tc.secret {
				t.Fatalf("volume %s = %+v, want secret %s", tc.volume, vol, tc.secret)
			}
			if len(vol.Secret.Items) != 0 {
				t.Errorf("volume %s projects items %+v, want the whole Secret", tc.volume, vol.Secret.Items)
			}
			if mount == nil || ptr.Deref(mount.MountPath, "") != tc.dir || !ptr.Deref(mount.ReadOnly, false) || ptr.Deref(mount.SubPath, "") != "" {
				t.Errorf("mount of %s = %+v, want read-only at %s without subPath", tc.volume, mount, tc.dir)
			}
			// What the pods read at start digests the same whatever the key Secret holds.
			before := map[string]*corev1.Secret{tc.secret: {Data: map[string][]byte{"k1.pub": []byte("1")}}}
			after := map[string]*corev1.Secret{tc.secret: {Data: map[string][]byte{"k2.pub": []byte("2")}}}
			p := tc.pod(f)
			if a, b := p.withSecrets(before).checksum, p.withSecrets(after).checksum; a != b {
				t.Errorf("the pods' checksum moved from %s to %s when a key rotated: it would roll them", a, b)
			}
		})
	}
}

func TestCheckSecret(t *testing.T) {
	deviceKeys := mountedSecret{component: componentGateway, shard: -1, field: "spec.auth.deviceKeysSecretRef", name: "keys", verificationKeys: true}
	dsn := mountedSecret{component: componentIngester, shard: 1, field: "spec.shards[1].dsnSecretRef", name: "pg-1", key: "dsn"}
	creds := mountedSecret{component: componentAnalytics, shard: -1, field: "spec.nats.credentialsSecretRef", name: "nats", key: "user.creds"}
	for _, tc := range []struct {
		name   string
		m      mountedSecret
		secret *corev1.Secret
		want   string
	}{
		{"a missing key Secret is named with its field", deviceKeys, nil, "SecretNotFound: secret prod/keys (spec.auth.deviceKeysSecretRef) not found: the gateway pods"},
		{"a key Secret without a .pub key is unusable", deviceKeys, &corev1.Secret{Data: map[string][]byte{"a1.key": nil, "README": nil}},
			"SecretInvalid: secret prod/keys (spec.auth.deviceKeysSecretRef) holds no <kid>.pub key"},
		{"one .pub key is enough", deviceKeys, &corev1.Secret{Data: map[string][]byte{"a1.pub": []byte("PEM"), "README": nil}}, ""},
		{"a missing DSN Secret names the shard's field and pods", dsn, nil,
			"SecretNotFound: secret prod/pg-1 (spec.shards[1].dsnSecretRef) not found: the shard 1 ingester pods cannot start until it exists"},
		{"a DSN Secret without its key cannot be mounted", dsn, &corev1.Secret{Data: map[string][]byte{"url": []byte("postgres://")}},
			`SecretInvalid: secret prod/pg-1 (spec.shards[1].dsnSecretRef) holds nothing under key "dsn"`},
		{"a DSN Secret with an empty key is as useless", dsn, &corev1.Secret{Data: map[string][]byte{"dsn": nil}}, "SecretInvalid:"},
		{"a DSN Secret with its key is fine", dsn, &corev1.Secret{Data: map[string][]byte{"dsn": []byte("postgres://pg-1/fleet")}}, ""},
		{"a missing NATS credentials Secret is named", creds, nil,
			"SecretNotFound: secret prod/nats (spec.nats.credentialsSecretRef) not found: the analytics pods"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := checkSecret("prod", tc.m, tc.secret)
			got := ""
			if p != nil {
				got = p.reason + ": " + p.message
			}
			if (tc.want == "") != (got == "") || !strings.HasPrefix(got, tc.want) {
				t.Errorf("problem = %q, want %q", got, tc.want)
			}
		})
	}
}

// In a cluster /metrics is served on its own port, which no Service or Ingress publishes.
func TestMetricsHaveTheirOwnPortThatNothingPublishes(t *testing.T) {
	f := newFleet(t, 1, func(fi *v1alpha1.FleetIngestion) {
		fi.Spec.Ingress = &v1alpha1.IngressSpec{Host: "t.example.com", ExposeAnalytics: true}
	})
	for name, p := range map[string]podSpec{"gateway": gatewayPod(f), "ingester": ingesterPod(f, 0), "analytics": analyticsPod(f)} {
		tpl := podTemplate(f, p)
		ports := map[string]int32{}
		for _, cp := range tpl.Spec.Containers[0].Ports {
			ports[*cp.Name] = *cp.ContainerPort
		}
		if ports["http"] != 8080 || ports["metrics"] != 9090 {
			t.Errorf("%s container ports = %v, want http 8080 and metrics 9090", name, ports)
		}
		if tpl.Annotations["prometheus.io/port"] != "9090" || tpl.Annotations["prometheus.io/path"] != "/metrics" {
			t.Errorf("%s scrape annotations = %v, want port 9090", name, tpl.Annotations)
		}
	}
	for svc, component := range map[string]string{gatewayName(f): componentGateway, analyticsName(f): componentAnalytics} {
		s := service(f, svc, component)
		if len(s.Spec.Ports) != 1 || s.Spec.Ports[0].TargetPort.StrVal != "http" {
			t.Errorf("service %s ports = %+v, want the http port only", svc, s.Spec.Ports)
		}
	}
	for _, p := range ingress(f).Spec.Rules[0].HTTP.Paths {
		if port := p.Backend.Service.Port; port.Name == nil || *port.Name != "http" || port.Number != nil {
			t.Errorf("ingress path %s routes to port %+v, want the http port", *p.Path, port)
		}
	}
}

func findVolume(vs []corev1ac.VolumeApplyConfiguration, name string) *corev1ac.VolumeApplyConfiguration {
	for i := range vs {
		if ptr.Deref(vs[i].Name, "") == name {
			return &vs[i]
		}
	}
	return nil
}

func findMount(ms []corev1ac.VolumeMountApplyConfiguration, name string) *corev1ac.VolumeMountApplyConfiguration {
	for i := range ms {
		if ptr.Deref(ms[i].Name, "") == name {
			return &ms[i]
		}
	}
	return nil
}
