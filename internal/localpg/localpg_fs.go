package localpg

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// osUser is the system user the server runs as; nil when this process is not root and the
// server runs as the current user.
type osUser struct {
	name     string
	uid, gid uint32
}

func lookupOwner(name string) (*osUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("running postgres as root is refused, and looking up system user %q to run it as failed: %w (the Debian package postgresql creates it)", name, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parsing uid of %q: %w", name, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parsing gid of %q: %w", name, err)
	}
	return &osUser{name: name, uid: uint32(uid), gid: uint32(gid)}, nil
}

func (u *osUser) chown(path string) error {
	if u == nil {
		return nil
	}
	if err := os.Chown(path, int(u.uid), int(u.gid)); err != nil {
		return fmt.Errorf("handing %s to system user %s: %w", path, u.name, err)
	}
	return nil
}

func (u *osUser) credential() *syscall.Credential {
	if u == nil {
		return nil
	}
	return &syscall.Credential{Uid: u.uid, Gid: u.gid, NoSetGroups: true}
}

// prepareDataDir creates the data folder (0700, owned by the server's user) and, when the
// server runs as another user, makes every folder above it traversable by that user.
func prepareDataDir(dir string, owner *osUser) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("resolving data directory %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return fmt.Errorf("creating data directory %s: %w", abs, err)
	}
	if owner == nil {
		return nil
	}
	if err := os.Chmod(abs, 0o700); err != nil {
		return fmt.Errorf("setting mode of data directory %s: %w", abs, err)
	}
	if err := owner.chown(abs); err != nil {
		return err
	}
	for p := filepath.Dir(abs); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("inspecting %s above the data directory: %w", p, err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(p, fi.Mode().Perm()|0o001); err != nil {
				return fmt.Errorf("making %s traversable for system user %s: %w", p, owner.name, err)
			}
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

func hasCluster(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "PG_VERSION"))
	return err == nil
}

func initdb(ctx context.Context, cfg Config, owner *osUser) error {
	args := []string{
		"-D", cfg.DataDir,
		"--username=" + superuser,
		"--auth=trust",
		"--encoding=UTF8",
		"--locale=C",
	}
	if cfg.FastInit {
		args = append(args, "--no-sync")
	}
	cmd := exec.CommandContext(ctx, filepath.Join(cfg.BinDir, "initdb"), args...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: owner.credential(), Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb in %s: %w: %s", cfg.DataDir, err, out)
	}
	return nil
}
