package runner

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// serverStartTimeout bounds a server's start (the first line of its stdout).
const serverStartTimeout = 30 * time.Second

// proc is one server process.
type proc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	addr   string
	exited chan struct{}
	err    error // cmd.Wait's, once exited is closed
	stderr *tail
	killed bool
}

// tail keeps the last bytes written to it: a crashed server's last words.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

const tailBytes = 2048

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailBytes {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailBytes:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}

// startServer starts impl: argv is cfg.ServerCmd plus the server's flags,
// behind taskset when pinning; it returns once the server printed its
// address.
func startServer(ctx context.Context, cfg *Config, impl string) (*proc, error) {
	argv := append(append([]string{}, cfg.ServerCmd...), "-impl", impl, "-addr", "127.0.0.1:0", "-stdin-exit")
	if cfg.ServerCPU != "" {
		argv = append([]string{cfg.taskset, "-c", cfg.ServerCPU}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(append(os.Environ(), "GOMAXPROCS=1"), cfg.ServerEnv...)
	p := &proc{cmd: cmd, exited: make(chan struct{}), stderr: &tail{}}
	cmd.Stderr = p.stderr
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("server %s: %w", impl, err)
	}
	// A pipe of our own, not StdoutPipe: Wait (in its own goroutine below)
	// may not close it before the address is read.
	stdout, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", impl, err)
	}
	cmd.Stdout = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		stdout.Close()
		return nil, fmt.Errorf("starting server %s: %w", impl, err)
	}
	lines := make(chan string, 1)
	go func() {
		defer stdout.Close()
		br := bufio.NewReader(stdout)
		line, _ := br.ReadString('\n')
		lines <- strings.TrimSpace(line)
		_, _ = io.Copy(io.Discard, br)
	}()
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	timer := time.NewTimer(serverStartTimeout)
	defer timer.Stop()
	select {
	case line := <-lines:
		if line == "" {
			p.stop()
			return nil, fmt.Errorf("server %s printed no address: %s", impl, p.describeExit())
		}
		p.addr = line
		return p, nil
	case <-timer.C:
		p.stop()
		return nil, fmt.Errorf("server %s did not start within %s: %s", impl, serverStartTimeout, p.stderr)
	case <-ctx.Done():
		p.stop()
		return nil, ctx.Err()
	}
}

// cpuSeconds is the server's CPU time so far (user + system), or -1.
func (p *proc) cpuSeconds() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return -1
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return (utime + stime) / clockTicks
}

// clockTicks is USER_HZ, 100 on Linux.
const clockTicks = 100

// selfCPUSeconds is this process's CPU time so far.
func selfCPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// crashed says whether the server exited on its own, and how, waiting up
// to grace for a dying process's exit to be seen.
func (p *proc) crashed(grace time.Duration) error {
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.exited:
		if p.killed {
			return nil
		}
		return errors.New("server exited during the run: " + p.describeExit())
	case <-timer.C:
		return nil
	}
}

func (p *proc) describeExit() string {
	<-p.exited
	s := "exit"
	if p.err != nil {
		s = p.err.Error()
	}
	if t := p.stderr.String(); t != "" {
		s += "; stderr: " + t
	}
	return s
}

// stop ends the server: stdin closed (it exits by itself), then a kill
// after a grace period.
func (p *proc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	p.killed = true
	_ = p.stdin.Close()
	timer := time.NewTimer(3 * time.Second)
	defer timer.Stop()
	select {
	case <-p.exited:
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}
