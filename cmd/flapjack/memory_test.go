//go:build unix

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// vmHWM is a process's peak resident memory, from /proc.
func vmHWM(t testing.TB, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// TestServeMemoryStaysBounded: an agent prints 60 lines of 4 MB; while four
// clients page through its events and five SSE clients connect and never
// read, serve's peak RSS stays under 200 MiB.
func TestServeMemoryStaysBounded(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads peak RSS from /proc (Linux only)")
	}
	dataDir := newDataDir(t)
	agent := writeAgent(t, `
i=0
while [ $i -lt 60 ]; do head -c 4000000 /dev/zero | tr '\0' a; echo; i=$((i+1)); done
`)
	s := startServe(t, dataDir, []string{"FLAPJACK_LOCAL_AGENT_COMMAND=" + agent})
	token := tokenRE.FindString(s.stderr.String())
	call := func(method, path string, body any, out any) {
		t.Helper()
		status, b := s.call(t, method, path, token, body)
		if status >= 300 {
			t.Fatalf("%s %s = %d %.300s", method, path, status, b)
		}
		if out != nil {
			json.Unmarshal(b, out)
		}
	}
	var ag struct{ ID string }
	call("POST", "/api/code-agents", map[string]any{"defaultRepoUrl": makeRepo(t), "runtime": "local"}, &ag)
	var st struct {
		SessionID string `json:"session_id"`
	}
	call("POST", "/api/code-sessions", map[string]any{"codeAgentId": ag.ID, "prompt": "print", "cursorApiKey": "crsr_memory_test_0123456789"}, &st)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var d struct{ Status string }
		call("GET", "/api/code-sessions/"+st.SessionID, nil, &d)
		if d.Status == "finished" || d.Status == "error" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("session still %s", d.Status)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Five SSE clients that never read past the status line.
	for range 5 {
		conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		fmt.Fprintf(conn, "GET /api/code-sessions/%s/events/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", st.SessionID, token)
		bufio.NewReader(conn).ReadString('\n')
	}
	// Four clients paging through everything, three times each.
	var wg sync.WaitGroup
	var pages, biggest int64
	var mu sync.Mutex
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				since := int64(0)
				for {
					req, _ := http.NewRequest("GET", fmt.Sprintf("%s/api/code-sessions/%s/events?limit=500&since=%d", s.url, st.SessionID, since), nil)
					req.Header.Set("Authorization", "Bearer "+token)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					var page struct {
						Events  []json.RawMessage `json:"events"`
						LastSeq int64             `json:"last_seq"`
					}
					json.Unmarshal(b, &page)
					mu.Lock()
					pages++
					biggest = max(biggest, int64(len(b)))
					mu.Unlock()
					if len(page.Events) == 0 {
						break
					}
					since = page.LastSeq
				}
			}
		}()
	}
	wg.Wait()
	peak := vmHWM(t, s.cmd.Process.Pid)
	t.Logf("serve peak RSS %d MiB over %d pages (largest %d KiB)", peak>>20, pages, biggest>>10)
	if peak > 200<<20 {
		t.Errorf("serve's peak RSS was %d MiB, want under 200", peak>>20)
	}
	if biggest > 5<<20 {
		t.Errorf("a page of %d bytes", biggest)
	}
}
