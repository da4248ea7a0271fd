package runner

import (
	"bufio"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// Machine describes where the run happened.
type Machine struct {
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	Date      string `json:"date"`
}

// ReadMachine reads the CPU model and core count from /proc/cpuinfo (not
// runtime.NumCPU, which a pinned process sees as 1) and the kernel release.
func ReadMachine() Machine {
	m := Machine{GoVersion: runtime.Version(), Date: time.Now().UTC().Format(time.RFC3339), Cores: runtime.NumCPU()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		cores := 0
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			switch strings.TrimSpace(k) {
			case "processor":
				cores++
			case "model name":
				if m.CPU == "" {
					m.CPU = strings.TrimSpace(v)
				}
			}
		}
		if cores > 0 {
			m.Cores = cores
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	return m
}

// Versions are the modules under test, as built into this binary (the
// server is built from the same module, so the same versions).
var Versions = func() []string {
	want := map[string]bool{
		"github.com/igm/sockjs-go/v3":        true,
		"github.com/centrifugal/centrifuge":  true,
		"github.com/zishang520/socket.io/v2": true,
		"github.com/zishang520/engine.io/v2": true,
		"github.com/gobwas/ws":               true,
		"github.com/cometkit/cometkit":       true,
	}
	var out []string
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if want[d.Path] {
				v := d.Version
				if d.Replace != nil {
					v = "local " + d.Replace.Path
				}
				out = append(out, d.Path+" "+v)
			}
		}
	}
	return out
}()
