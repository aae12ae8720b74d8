package localpg

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is a running postmaster: its output goes to the logger and a short tail is kept
// for error messages.
type process struct {
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error // set before done closes

	mu   sync.Mutex
	tail []string
}

const tailLines = 20

// startProcess starts cmd as owner, with the parent-death signal set so the kernel stops the
// postmaster when this process dies. The child is started from a goroutine locked to its OS
// thread that stays alive until the child exits, because Linux sends the parent-death signal
// when the creating thread exits, not the process.
func startProcess(cmd *exec.Cmd, owner *osUser, log *slog.Logger) (*process, error) {
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: owner.credential(),
		// SIGQUIT is postgres' immediate shutdown: the postmaster stops its children, then exits.
		Pdeathsig: syscall.SIGQUIT,
		Setpgid:   true,
	}
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw
	p := &process{cmd: cmd, done: make(chan struct{})}
	go p.readLog(pr, log)

	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Never unlocked: the thread ends with this goroutine, after the child has exited.
		if err := cmd.Start(); err != nil {
			_ = pw.Close() // closing a pipe's writer never fails
			started <- err
			return
		}
		started <- nil
		p.waitErr = cmd.Wait()
		_ = pw.Close() // closing a pipe's writer never fails
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

func (p *process) readLog(r io.Reader, log *slog.Logger) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		log.Debug(line, "source", "postgres")
		p.mu.Lock()
		p.tail = append(p.tail, line)
		if len(p.tail) > tailLines {
			p.tail = p.tail[len(p.tail)-tailLines:]
		}
		p.mu.Unlock()
	}
	io.Copy(io.Discard, r) //nolint:errcheck // drain after an over-long line
}

func (p *process) logTail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

// stop asks for a fast shutdown (SIGINT) and waits; when ctx ends first it escalates to an
// immediate shutdown (SIGQUIT), then SIGKILL to the whole process group.
func (p *process) stop(ctx context.Context) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		select {
		case <-p.done:
			return nil
		default:
			return fmt.Errorf("signalling postgres to shut down: %w", err)
		}
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
	}
	p.cmd.Process.Signal(syscall.SIGQUIT) //nolint:errcheck // it may have exited meanwhile
	select {
	case <-p.done:
		return fmt.Errorf("postgres fast shutdown did not finish in time: %w; quit immediately", ctx.Err())
	case <-time.After(5 * time.Second):
	}
	p.kill()
	return fmt.Errorf("postgres did not shut down in time: %w; killed", ctx.Err())
}

// kill kills the postmaster and its children and waits for the postmaster.
func (p *process) kill() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) //nolint:errcheck // it may have exited meanwhile
	<-p.done
}
