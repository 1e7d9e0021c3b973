package platform

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// These tests use nothing but this test binary, which runs itself as the
// helper processes they need (TestMain), so they run unchanged on every OS.

const helperEnv = "FLAPJACK_PLATFORM_HELPER"

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(helper(h))
	}
	os.Exit(m.Run())
}

// helper is a child process: "lock <path>" holds the lock on path until its
// stdin closes; "tree" starts a grandchild, prints its pid and waits;
// "sleep" waits.
func helper(h string) int {
	what, arg, _ := strings.Cut(h, " ")
	switch what {
	case "lock":
		f, err := os.OpenFile(arg, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return 1
		}
		if ok, err := LockFile(f, false); !ok || err != nil {
			fmt.Println("busy")
			return 1
		}
		fmt.Println("locked")
		io.Copy(io.Discard, os.Stdin)
		return 0
	case "tree":
		c := self("sleep")
		if err := c.Start(); err != nil {
			return 1
		}
		fmt.Println(c.Process.Pid)
		c.Wait()
		return 0
	case "sleep":
		time.Sleep(time.Minute)
		return 0
	}
	return 2
}

// self is a command running this test binary as the helper h.
func self(h string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	c := exec.Command(exe, "-test.run=^$")
	c.Env = append(os.Environ(), helperEnv+"="+h)
	return c
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestProcString(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Proc
		ok   bool
	}{
		{"1234", Proc{PID: 1234}, true},
		{"1234@987654321", Proc{PID: 1234, Start: 987654321}, true},
		{" 42@7\n", Proc{PID: 42, Start: 7}, true},
		{"", Proc{}, false},
		{"1", Proc{}, false},
		{"-5", Proc{}, false},
		{"12@x", Proc{}, false},
		{"abc", Proc{}, false},
	} {
		got, ok := ParseProc(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseProc(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
		if ok {
			if back, _ := ParseProc(got.String()); back != got {
				t.Errorf("%+v does not survive String: %q", got, got.String())
			}
		}
	}
}

// TestLockFile: a lock another process holds is refused without waiting, a
// waiter gets it the moment the holder lets go, and a holder that is killed
// lets go too.
func TestLockFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	hold := func() (*exec.Cmd, io.WriteCloser) {
		c := self("lock " + path)
		in, _ := c.StdinPipe()
		out, _ := c.StdoutPipe()
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(out).ReadString('\n')
		if strings.TrimSpace(line) != "locked" {
			t.Fatalf("the helper could not lock: %q", line)
		}
		return c, in
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	c, in := hold()
	if ok, err := LockFile(f, false); ok || err != nil {
		t.Fatalf("lock held elsewhere = %v, %v; want refused", ok, err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := LockFile(f, true)
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("the wait ended while the lock was held: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	in.Close()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter never got the lock")
	}
	c.Wait()
	if err := UnlockFile(f); err != nil {
		t.Fatal(err)
	}

	c, _ = hold()
	if err := c.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	c.Wait()
	if ok, err := LockFile(f, false); !ok || err != nil {
		t.Fatalf("lock after its holder was killed = %v, %v", ok, err)
	}
	UnlockFile(f)
}

// TestStopGroup: a process started in a new group is known with its start
// time; forcing its group stops it and the child it started.
func TestStopGroup(t *testing.T) {
	c := self("tree")
	NewGroup(c)
	out, _ := c.StdoutPipe()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { c.Wait(); close(done) }()
	line, _ := bufio.NewReader(out).ReadString('\n')
	child, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("helper said %q", line)
	}
	pgid := c.Process.Pid
	t.Cleanup(func() { StopGroup(pgid, true) })

	leader, ok := Identify(pgid)
	if !ok || !leader.Running() || !SafeGroup(pgid) || !GroupAlive(pgid) {
		t.Fatalf("leader %+v (ok %v), safe %v, alive %v", leader, ok, SafeGroup(pgid), GroupAlive(pgid))
	}
	if _, ok := Identify(child); !ok {
		t.Fatal("the child does not run")
	}
	if err := StopGroup(pgid, true); err != nil {
		t.Fatal(err)
	}
	<-done
	eventually(t, "the group to be gone", func() bool { return !GroupAlive(pgid) })
	eventually(t, "the child to be gone", func() bool { _, ok := Identify(child); return !ok })
	if leader.Running() {
		t.Error("a stopped leader still counts as running")
	}
}

// TestIdentifyTellsProcessesApart: a process is itself; the same pid with
// another start time (a later process reusing it) is not; this process's
// group is never safe to stop.
func TestIdentifyTellsProcessesApart(t *testing.T) {
	me := Self()
	if me.PID != os.Getpid() || !me.Running() {
		t.Fatalf("Self = %+v", me)
	}
	if me.Start == 0 {
		t.Skip("this OS does not tell start times")
	}
	if (Proc{PID: me.PID, Start: me.Start + 1}).Running() {
		t.Error("a process with another start time passes for this one")
	}
	if SafeGroup(os.Getpid()) {
		t.Error("this process's own group is safe to stop")
	}
}

// TestDiskUse: hard links share one identity, so they count once.
func TestDiskUse(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	if err := os.WriteFile(a, make([]byte, 10000), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(a, b); err != nil {
		t.Skipf("no hard links here: %v", err)
	}
	fa, _ := os.Stat(a)
	fb, _ := os.Stat(b)
	ida, bytes, oka := DiskUse(fa)
	idb, _, okb := DiskUse(fb)
	if bytes < 10000 {
		t.Errorf("10000-byte file takes %d bytes", bytes)
	}
	if oka != okb || (oka && ida != idb) {
		t.Errorf("hard links: %v %v, %v %v; want one identity", ida, oka, idb, okb)
	}
}

func TestFreeSpace(t *testing.T) {
	free, err := FreeSpace(t.TempDir())
	if err != nil || free == 0 {
		t.Errorf("FreeSpace = %d, %v", free, err)
	}
	if _, err := FreeSpace(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("FreeSpace of a missing directory: no error")
	}
}

// TestExecutables: a command's file is found under one of its executable
// names and counts as executable; a plain data file does not.
func TestExecutables(t *testing.T) {
	dir := t.TempDir()
	names := ExecutableNames("agent")
	if len(names) == 0 {
		t.Fatal("no executable names")
	}
	exe := filepath.Join(dir, names[len(names)-1])
	if err := os.WriteFile(exe, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "agent.txt")
	if err := os.WriteFile(data, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	fe, _ := os.Stat(exe)
	fd, _ := os.Stat(data)
	fdir, _ := os.Stat(dir)
	if !IsExecutable(fe) || IsExecutable(fd) || IsExecutable(fdir) {
		t.Errorf("executable %v, data file %v, directory %v; want true, false, false", IsExecutable(fe), IsExecutable(fd), IsExecutable(fdir))
	}
}
