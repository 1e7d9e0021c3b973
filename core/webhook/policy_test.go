package webhook

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeResolver answers from a table; a host it does not know does not
// resolve. With sequence set, a host's answers are used in turn (the last
// one repeats), as a rebinding DNS server would give them.
type fakeResolver struct {
	mu       sync.Mutex
	answers  map[string][][]netip.Addr
	lookups  map[string]int
	failures map[string]error
}

func newResolver() *fakeResolver {
	return &fakeResolver{answers: map[string][][]netip.Addr{}, lookups: map[string]int{}, failures: map[string]error{}}
}

// set makes host answer addrs, then the next set of addrs, and so on.
func (r *fakeResolver) set(host string, seq ...[]string) *fakeResolver {
	for _, addrs := range seq {
		var as []netip.Addr
		for _, a := range addrs {
			as = append(as, netip.MustParseAddr(a))
		}
		r.answers[host] = append(r.answers[host], as)
	}
	return r
}

func (r *fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.lookups[host]
	r.lookups[host]++
	if err := r.failures[host]; err != nil {
		return nil, err
	}
	seq, ok := r.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return seq[min(n, len(seq)-1)], nil
}

func (r *fakeResolver) count(host string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lookups[host]
}

func tableResolver() *fakeResolver {
	return newResolver().
		set("hooks.example.com", []string{"93.184.215.14"}).
		set("v6.example.com", []string{"2606:4700:4700::1111", "93.184.215.14"}).
		set("internal.example.com", []string{"10.1.2.3"}).
		set("mixed.example.com", []string{"93.184.215.14", "127.0.0.1"}).
		set("empty.example.com", []string{}).
		set("mapped.example.com", []string{"::ffff:10.0.0.1"}).
		set("mapped-public.example.com", []string{"::ffff:93.184.215.14"}).
		set("cgnat.example.com", []string{"100.64.1.1"}).
		set("meta.example.com", []string{"169.254.169.254"}).
		set("nat64.example.com", []string{"64:ff9b::a00:1"}).
		set("localhost", []string{"127.0.0.1", "::1"})
}

// TestWebhookURLTable is the bad-input table of issue 6: every class of
// unsafe URL, the encodings that hide one, and the safe URLs that must pass.
func TestWebhookURLTable(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
		why string // part of the refusal
	}{
		// Allowed.
		{"https://hooks.example.com/flapjack", true, ""},
		{"https://HOOKS.EXAMPLE.COM/Flapjack", true, ""},
		{"HTTPS://hooks.example.com/", true, ""},
		{"https://hooks.example.com./x", true, ""},
		{"https://hooks.example.com:8443/x", true, ""},
		{"https://hooks.example.com/p?token=abc#frag", true, ""},
		{"https://93.184.215.14/x", true, ""},
		{"https://[2606:4700:4700::1111]:8443/x", true, ""},
		{"https://v6.example.com/", true, ""},
		{"https://mapped-public.example.com/", true, ""},
		// Scheme, shape, user information.
		{"http://hooks.example.com/", false, "https"},
		{"ftp://hooks.example.com/", false, "https"},
		{"hooks.example.com/x", false, "absolute"},
		{"https:hooks.example.com", false, "absolute"},
		{"https://", false, "host"},
		{"https:///path", false, "host"},
		{"https://user:pass@hooks.example.com/", false, "user information"},
		{"https://hooks.example.com@127.0.0.1/", false, "user information"},
		{"https://hooks.example.com:0/", false, "port"},
		{"https://hooks.example.com:65536/", false, "port"},
		{"https://hooks.example.com:/", false, "empty port"},
		{"https://hooks.example.com/" + strings.Repeat("a", 2100), false, "at most"},
		// Loopback, in every spelling.
		{"https://localhost/", false, "loopback"},
		{"https://LOCALHOST./", false, "loopback"},
		{"https://api.localhost:8443/", false, "loopback"},
		{"https://127.0.0.1/", false, "loopback"},
		{"https://127.1.2.3:8443/", false, "loopback"},
		{"https://127.0.0.1./", false, "loopback"},
		{"https://[::1]/", false, "loopback"},
		{"https://0x7f000001/", false, "non-standard"},
		{"https://2130706433/", false, "non-standard"},
		{"https://0177.0.0.1/", false, "non-standard"},
		{"https://127.1/", false, "non-standard"},
		{"https://0x7f.0.0.1/", false, "non-standard"},
		{"https://[::ffff:127.0.0.1]/", false, "IPv4-mapped"},
		{"https://[::ffff:7f00:1]/", false, "IPv4-mapped"},
		{"https://[::ffff:93.184.215.14]/", false, "IPv4-mapped"},
		{"https://0.0.0.0/", false, "unspecified"},
		{"https://[::]/", false, "unspecified"},
		// Private, shared and unique-local.
		{"https://10.0.0.1/", false, "private"},
		{"https://172.16.5.4/", false, "private"},
		{"https://172.31.255.255/", false, "private"},
		{"https://192.168.1.1:8443/", false, "private"},
		{"https://100.64.0.1/", false, "CGNAT"},
		{"https://100.127.255.254/", false, "CGNAT"},
		{"https://[fd00::1]/", false, "private"},
		{"https://[fc00::1]/", false, "private"},
		// Link-local and metadata.
		{"https://169.254.169.254/latest/meta-data/", false, "link-local"},
		{"https://[fe80::1]/", false, "link-local"},
		{"https://[fe80::1%25eth0]/", false, "zone"},
		{"https://metadata.google.internal/computeMetadata/v1/", false, "metadata"},
		{"https://METADATA.GOOGLE.INTERNAL./", false, "metadata"},
		{"https://metadata/", false, "metadata"},
		{"https://instance-data/", false, "metadata"},
		{"https://100.100.100.200/", false, "CGNAT"},
		{"https://192.0.0.192/", false, "special use"},
		{"https://[fd00:ec2::254]/", false, "private"},
		{"https://db.internal/", false, ".internal"},
		// Multicast, broadcast, documentation, benchmarking, NAT64, 6to4, Teredo.
		{"https://224.0.0.1/", false, "multicast"},
		{"https://239.255.255.250/", false, "multicast"},
		{"https://[ff02::1]/", false, "multicast"},
		{"https://255.255.255.255/", false, "special use"},
		{"https://192.0.2.10/", false, "special use"},
		{"https://198.51.100.7/", false, "special use"},
		{"https://203.0.113.9/", false, "special use"},
		{"https://[2001:db8::1]/", false, "special use"},
		{"https://198.18.0.1/", false, "special use"},
		{"https://198.19.255.255/", false, "special use"},
		{"https://[64:ff9b::7f00:1]/", false, "NAT64"},
		{"https://[64:ff9b::808:808]/", false, "NAT64"},
		{"https://[2002:7f00:1::1]/", false, "special use"},
		{"https://[2001::1]/", false, "special use"},
		// Names whose addresses are not public, or that do not resolve.
		{"https://internal.example.com/", false, "private"},
		{"https://mixed.example.com/", false, "loopback"},
		{"https://mapped.example.com/", false, "private"},
		{"https://cgnat.example.com/", false, "CGNAT"},
		{"https://meta.example.com/", false, "link-local"},
		{"https://nat64.example.com/", false, "NAT64"},
		{"https://nxdomain.example.com/", false, "does not resolve"},
		{"https://empty.example.com/", false, "does not resolve"},
	} {
		t.Run(tc.url[:min(len(tc.url), 60)], func(t *testing.T) {
			err := NewPolicy(false, tableResolver()).CheckWebhookURL(context.Background(), tc.url)
			if tc.ok != (err == nil) {
				t.Fatalf("CheckWebhookURL(%q) = %v, want ok=%v", tc.url, err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), tc.why) {
				t.Errorf("CheckWebhookURL(%q) = %q, want it to say %q", tc.url, err, tc.why)
			}
		})
	}
}

func TestLiteralAddressNeedsNoLookup(t *testing.T) {
	r := tableResolver()
	p := NewPolicy(false, r)
	if err := p.CheckWebhookURL(context.Background(), "https://93.184.215.14/x"); err != nil {
		t.Fatal(err)
	}
	if err := p.CheckWebhookURL(context.Background(), "https://127.0.0.1/x"); err == nil {
		t.Fatal("loopback literal allowed")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.lookups) != 0 {
		t.Errorf("literal addresses were looked up: %v", r.lookups)
	}
}

func TestResolverFailureFailsClosed(t *testing.T) {
	r := tableResolver()
	r.failures["hooks.example.com"] = errors.New("i/o timeout")
	if err := NewPolicy(false, r).CheckWebhookURL(context.Background(), "https://hooks.example.com/"); err == nil || !strings.Contains(err.Error(), "does not resolve") {
		t.Errorf("a failing lookup = %v, want refusal", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := NewPolicy(false, tableResolver()).CheckWebhookURL(ctx, "https://nxdomain.example.com/"); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled caller got %v, want context.Canceled (not the URL's fault)", err)
	}
}

func TestAllowPrivateIsOnlyForLoopbackAndPrivate(t *testing.T) {
	p := NewPolicy(true, tableResolver())
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:8080/hook", true},
		{"http://localhost:8080/hook", true},
		{"https://10.0.0.1/", true},
		{"http://[::1]:9000/", true},
		{"https://[fd00::1]/", true},
		{"https://internal.example.com/", true},
		{"https://hooks.example.com/", true},
		{"http://hooks.example.com/", true},
		{"https://169.254.169.254/", false},
		{"https://metadata.google.internal/", false},
		{"https://100.64.0.1/", false},
		{"https://[::ffff:127.0.0.1]/", false},
		{"https://0x7f000001/", false},
		{"https://224.0.0.1/", false},
		{"ftp://127.0.0.1/", false},
		{"http://u:p@127.0.0.1/", false},
	} {
		if err := p.CheckWebhookURL(context.Background(), tc.url); tc.ok != (err == nil) {
			t.Errorf("allow-private CheckWebhookURL(%q) = %v, want ok=%v", tc.url, err, tc.ok)
		}
	}
}

// listen returns a loopback listener that counts the connections it gets.
func listen(t *testing.T) (addr string, accepted func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	n := 0
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			n++
			mu.Unlock()
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String(), func() int {
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

// TestDialerChecksTheAddressItConnectsTo: the dialer refuses an internal
// address by itself, whatever the set-time check said.
func TestDialerChecksTheAddressItConnectsTo(t *testing.T) {
	addr, accepted := listen(t)
	_, port, _ := net.SplitHostPort(addr)
	p := NewPolicy(false, newResolver().set("sneaky.example.com", []string{"127.0.0.1"}))
	for _, target := range []string{addr, "sneaky.example.com:" + port, "[::ffff:127.0.0.1]:" + port} {
		c, err := p.DialContext(context.Background(), "tcp", target)
		if err == nil {
			c.Close()
			t.Fatalf("dial %s succeeded", target)
		}
		if !strings.Contains(err.Error(), "address refused") || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("dial %s = %v, want the dialer's refusal", target, err)
		}
	}
	if n := accepted(); n != 0 {
		t.Errorf("the listener accepted %d connections", n)
	}
	// With the testing exception the same dial connects.
	c, err := NewPolicy(true, nil).DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatalf("allow-private dial: %v", err)
	}
	c.Close()
}

func TestControlRefusesOtherNetworks(t *testing.T) {
	p := NewPolicy(true, nil)
	if err := p.control("udp4", "127.0.0.1:53", nil); err == nil {
		t.Error("udp allowed")
	}
	if err := p.control("tcp4", "not an address", nil); err == nil {
		t.Error("unparsable address allowed")
	}
	if err := NewPolicy(false, nil).control("tcp6", "[2606:4700:4700::1111]:443", nil); err != nil {
		t.Errorf("public address refused: %v", err)
	}
}
