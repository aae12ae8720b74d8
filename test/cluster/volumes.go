package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// file is one file of a Secret or ConfigMap volume.
type file struct {
	data []byte
	mode os.FileMode
}

// mountVolumes writes the pod's volumes and gives each container its root folder with its
// mounts (and, when the pod mounts its ServiceAccount token, the account's kubeconfig).
func (p *Pod) mountVolumes(ctx context.Context) error {
	for i := range p.template.Spec.Volumes {
		v := &p.template.Spec.Volumes[i]
		if err := p.mountVolume(ctx, v); err != nil {
			return fmt.Errorf("volume %s: %w", v.Name, err)
		}
	}
	for _, c := range allContainers(&p.template.Spec) {
		if err := p.mountInto(ctx, c); err != nil {
			return fmt.Errorf("container %s: %w", c.Name, err)
		}
	}
	return nil
}

func (p *Pod) volumeDir(name string) string { return filepath.Join(p.dir, "volumes", name) }

func (p *Pod) mountVolume(ctx context.Context, v *corev1.Volume) error {
	dir := p.volumeDir(v.Name)
	switch {
	case v.EmptyDir != nil:
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return err
		}
		return os.Chmod(dir, 0o777)
	case v.Secret != nil, v.ConfigMap != nil:
		files, err := p.volumeFiles(ctx, v)
		if err != nil {
			return err
		}
		if err := p.publish(dir, files); err != nil {
			return err
		}
		p.volumes[v.Name] = files
		return nil
	}
	return errors.New("only emptyDir, secret and configMap volumes are emulated")
}

// volumeFiles are the files of a Secret or ConfigMap volume: every key, or the items, with
// their modes. An optional object that is missing has none; a missing one that is not
// optional, or a missing item key, is an error (the pod waits, as ContainerCreating).
func (p *Pod) volumeFiles(ctx context.Context, v *corev1.Volume) (map[string]file, error) {
	var (
		data     = map[string][]byte{}
		items    []corev1.KeyToPath
		mode     *int32
		optional bool
		obj      string
		err      error
	)
	key := types.NamespacedName{Namespace: p.Namespace}
	if s := v.Secret; s != nil {
		items, mode, optional, obj = s.Items, s.DefaultMode, ptr.Deref(s.Optional, false), "secret "+s.SecretName
		key.Name = s.SecretName
		var secret corev1.Secret
		if err = p.node.cfg.Client.Get(ctx, key, &secret); err == nil {
			data = secret.Data
		}
	} else {
		cmv := v.ConfigMap
		items, mode, optional, obj = cmv.Items, cmv.DefaultMode, ptr.Deref(cmv.Optional, false), "config map "+cmv.Name
		key.Name = cmv.Name
		var cm corev1.ConfigMap
		if err = p.node.cfg.Client.Get(ctx, key, &cm); err == nil {
			for k, s := range cm.Data {
				data[k] = []byte(s)
			}
			for k, b := range cm.BinaryData {
				data[k] = b
			}
		}
	}
	switch {
	case apierrors.IsNotFound(err) && optional:
		return map[string]file{}, nil
	case err != nil:
		return nil, fmt.Errorf("%s: %w", obj, err)
	}
	defaultMode := os.FileMode(ptr.Deref(mode, 0o644))
	files := map[string]file{}
	if len(items) == 0 {
		for k, d := range data {
			files[k] = file{data: d, mode: defaultMode}
		}
		return files, nil
	}
	for _, it := range items {
		d, ok := data[it.Key]
		if !ok {
			if optional {
				continue
			}
			return nil, fmt.Errorf("%s has no key %s", obj, it.Key)
		}
		m := defaultMode
		if it.Mode != nil {
			m = os.FileMode(*it.Mode)
		}
		files[it.Path] = file{data: d, mode: m}
	}
	return files, nil
}

var stamps atomic.Int64

// publish writes a volume's files the way kubelet's atomic writer does: into a new
// timestamped folder, a "..data" link renamed over the old one, each top-level name a link
// through "..data"; then names no longer published and the old folder go. Files are owned
// by the pod's fsGroup, when the node runs as root and the pod has one.
func (p *Pod) publish(dir string, files map[string]file) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	stamp := fmt.Sprintf("..%s.%d", time.Now().UTC().Format("2006_01_02_15_04_05"), stamps.Add(1))
	gid := -1
	if sc := p.template.Spec.SecurityContext; sc != nil && sc.FSGroup != nil && os.Geteuid() == 0 {
		gid = int(*sc.FSGroup)
	}
	top := map[string]bool{}
	for path, f := range files {
		full := filepath.Join(dir, stamp, path)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, f.data, 0o600); err != nil {
			return err
		}
		if gid >= 0 {
			if err := os.Chown(full, 0, gid); err != nil {
				return err
			}
		}
		if err := os.Chmod(full, f.mode); err != nil {
			return err
		}
		top[strings.Split(path, "/")[0]] = true
	}
	if err := os.MkdirAll(filepath.Join(dir, stamp), 0o755); err != nil { // even with no files
		return err
	}
	tmp := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(stamp, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		return err
	}
	return tidy(dir, stamp, top)
}

// tidy links every published top-level name through "..data" and removes the names and
// timestamped folders of earlier publications.
func tidy(dir, stamp string, top map[string]bool) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case name == "..data" || name == stamp:
		case strings.HasPrefix(name, ".."):
			if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
				return err
			}
		case !top[name]:
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return err
			}
		}
	}
	for name := range top {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
			return err
		}
	}
	return nil
}

// mountInto makes a container's root folder: a link per volume mount to the pod's volume
// (or a path in it, for subPath), and the ServiceAccount kubeconfig where the token would be
// mounted.
func (p *Pod) mountInto(ctx context.Context, c *corev1.Container) error {
	root := p.rootfs(c.Name)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	volumes := map[string]bool{}
	for i := range p.template.Spec.Volumes {
		volumes[p.template.Spec.Volumes[i].Name] = true
	}
	for _, m := range c.VolumeMounts {
		if !volumes[m.Name] {
			return fmt.Errorf("mount %s names no volume of the pod", m.Name)
		}
		target := filepath.Join(root, m.MountPath)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		_ = os.Remove(target)
		if err := os.Symlink(filepath.Join(p.volumeDir(m.Name), m.SubPath), target); err != nil {
			return err
		}
	}
	if !p.mountsServiceAccountToken() {
		return nil
	}
	sa := p.template.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	kc, err := p.node.cfg.ServiceAccountKubeconfig(ctx, p.Namespace, sa)
	if err != nil {
		return fmt.Errorf("credentials of service account %s: %w", sa, err)
	}
	path := filepath.Join(root, serviceAccountKubeconfig)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		return err
	}
	if os.Geteuid() == 0 { // owned by the user the container runs as, as kubelet does
		uid, gid := p.user(c, p.node.cfg.Images[c.Image])
		return os.Chown(path, int(uid), int(gid))
	}
	return nil
}

// refreshVolumes rewrites a Secret or ConfigMap volume when its object changed, until ctx
// is done. A volume whose object is gone keeps its last content, as in kubelet.
func (p *Pod) refreshVolumes(ctx context.Context) {
	t := time.NewTicker(p.node.cfg.VolumeRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for i := range p.template.Spec.Volumes {
			v := &p.template.Spec.Volumes[i]
			if v.Secret == nil && v.ConfigMap == nil {
				continue
			}
			files, err := p.volumeFiles(ctx, v)
			if err != nil || sameFiles(files, p.volumes[v.Name]) {
				continue
			}
			if err := p.publish(p.volumeDir(v.Name), files); err != nil {
				p.node.cfg.Log.Warn("refreshing volume", "pod", p.Namespace+"/"+p.Name, "volume", v.Name, "err", err)
				continue
			}
			p.volumes[v.Name] = files
			p.node.cfg.Log.Info("volume updated", "pod", p.Namespace+"/"+p.Name, "volume", v.Name)
		}
	}
}

func sameFiles(a, b map[string]file) bool {
	if len(a) != len(b) {
		return false
	}
	for k, f := range a {
		g, ok := b[k]
		if !ok || f.mode != g.mode || !bytes.Equal(f.data, g.data) {
			return false
		}
	}
	return true
}
