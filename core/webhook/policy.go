// Package webhook sends status webhooks from the outbox: signed the Standard
// Webhooks way, retried with backoff, and only ever to public addresses.
//
// The address policy is checked twice. When a URL is set (Policy implements
// core.WebhookChecker) so the caller learns at once; and, authoritatively,
// inside the dialer on the address actually connected to, so a name that
// resolves to a public address when it is set and to an internal one later
// (DNS rebinding) still cannot reach the inside.
package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"code.dny.dev/ssrf"

	"github.com/flapjack-dev/flapjack/core"
)

// AllowPrivateEnv names the environment variable that lets webhooks reach
// loopback and private addresses, over http:// too. For local testing only.
const AllowPrivateEnv = "FLAPJACK_WEBHOOK_ALLOW_PRIVATE"

// Resolver looks up a host's addresses; *net.Resolver is one. Tests inject
// their own so they need no DNS and can answer differently each time.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// resolveTimeout bounds the lookup when a URL is set.
const resolveTimeout = 5 * time.Second

// metadataNames are cloud metadata services' well-known names. Their
// addresses are refused anyway; the names are refused too, so the answer
// does not depend on where flapjack happens to run.
func metadataNames() []string {
	return []string{"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"}
}

// Policy decides which webhook URLs and addresses are allowed. It is safe for
// concurrent use.
type Policy struct {
	allowPrivate bool
	resolver     Resolver
	// guard is the address policy: the IANA special-purpose registries as
	// code.dny.dev/ssrf keeps them, with any port allowed.
	guard *ssrf.Guardian
}

// NewPolicy returns the policy. allowPrivate (FLAPJACK_WEBHOOK_ALLOW_PRIVATE)
// also allows loopback and private (RFC 1918, unique-local) receivers and
// http://; link-local, metadata and the other special ranges stay refused.
// A nil resolver is the system's.
func NewPolicy(allowPrivate bool, r Resolver) *Policy {
	if r == nil {
		r = net.DefaultResolver
	}
	return &Policy{allowPrivate: allowPrivate, resolver: r, guard: ssrf.New(ssrf.WithAnyPort())}
}

// AllowsPrivate reports whether the testing exception is on.
func (p *Policy) AllowsPrivate() bool { return p.allowPrivate }

var _ core.WebhookChecker = (*Policy)(nil)

// CheckWebhookURL checks a URL when it is set: shape, name, and every address
// it resolves to. A name that does not resolve is refused (fail closed); an
// IP literal needs no lookup. The error is safe to show the caller.
func (p *Policy) CheckWebhookURL(ctx context.Context, raw string) error {
	host, err := p.checkShape(raw)
	if err != nil {
		return err
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return errors.New("the address must not carry an IPv6 zone")
		}
		if ip.Is4In6() {
			return fmt.Errorf("%s is an IPv4-mapped IPv6 address; write the IPv4 address itself", ip)
		}
		return p.checkAddr(ip)
	}
	if err := p.checkName(host); err != nil {
		return err
	}
	lctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	ips, err := p.resolver.LookupNetIP(lctx, "ip", host)
	if err != nil || len(ips) == 0 {
		if ctx.Err() != nil {
			return ctx.Err() // the caller gave up; not the URL's fault
		}
		return fmt.Errorf("host %q does not resolve; a webhook URL must name a host that resolves to public addresses", host)
	}
	for _, ip := range ips {
		if err := p.checkAddr(ip.Unmap()); err != nil {
			return fmt.Errorf("host %q resolves to %w", host, err)
		}
	}
	return nil
}

// checkShape checks everything but addresses and returns the host, lower
// case and without a trailing dot.
func (p *Policy) checkShape(raw string) (string, error) {
	if len(raw) > core.MaxURLChars {
		return "", fmt.Errorf("must be at most %d characters", core.MaxURLChars)
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Opaque != "" {
		return "", errors.New("must be an absolute https:// URL")
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && p.allowPrivate:
	default:
		return "", errors.New("must use https://")
	}
	if u.User != nil {
		return "", errors.New("must not contain user information")
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return "", errors.New("must name a host")
	}
	if port := u.Port(); port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("port %q is not a port number", port)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return "", errors.New("must not end its host with an empty port")
	}
	host = strings.TrimSuffix(host, ".")
	if host == "" || strings.HasSuffix(host, ".") {
		return "", errors.New("must name a host")
	}
	return host, nil
}

// checkName refuses names that are internal by definition, and numbers that
// are IP addresses in forms that resolvers read differently (2130706433,
// 0x7f000001, 0177.0.0.1, 127.1): WHATWG URLs and libc treat a name whose
// last label is numeric as an address, so it is one or nothing.
func (p *Policy) checkName(host string) error {
	for _, m := range metadataNames() {
		if host == m {
			return fmt.Errorf("%q is a cloud metadata service", host)
		}
	}
	if !p.allowPrivate {
		if host == "localhost" || strings.HasSuffix(host, ".localhost") {
			return fmt.Errorf("%q is a loopback name", host)
		}
		if strings.HasSuffix(host, ".internal") {
			return fmt.Errorf("%q is in .internal, which is for private networks", host)
		}
	}
	last := host[strings.LastIndexByte(host, '.')+1:]
	numeric := last != ""
	for _, r := range last {
		numeric = numeric && r >= '0' && r <= '9'
	}
	if numeric || strings.HasPrefix(last, "0x") {
		return fmt.Errorf("%q is an IP address in a non-standard form; write it as a dotted-quad IPv4 or a bracketed IPv6 address", host)
	}
	return nil
}

// checkAddr decides one address. Its error starts with the address, so it
// reads well after "resolves to".
func (p *Policy) checkAddr(ip netip.Addr) error {
	if p.allowPrivate && (ip.IsLoopback() || ip.IsPrivate()) {
		return nil
	}
	if err := p.guard.SafeAddr(ip); err != nil {
		return fmt.Errorf("%s, %s; webhooks go to public addresses only", ip, describe(ip))
	}
	return nil
}

// describe names an address's class for messages; the decision is the
// guard's.
func describe(ip netip.Addr) string {
	switch {
	case ip.Is4In6():
		return "an IPv4-mapped IPv6 address"
	case ip.IsLoopback():
		return "a loopback address"
	case ip.IsPrivate():
		return "a private address"
	case ip.IsLinkLocalUnicast():
		return "a link-local address (cloud metadata lives there)"
	case ip.IsMulticast(), ip.IsLinkLocalMulticast(), ip.IsInterfaceLocalMulticast():
		return "a multicast address"
	case ip.IsUnspecified():
		return "the unspecified address"
	case ssrf.IPv6NAT64Prefix.Contains(ip):
		return "a NAT64 address"
	case netip.MustParsePrefix("100.64.0.0/10").Contains(ip):
		return "a shared (CGNAT) address"
	}
	return "an address reserved for special use (documentation, benchmarking, protocol assignments)"
}

// control is the dialer's net.Dialer.Control: the authoritative check, on the
// address the socket is about to connect to.
func (p *Policy) control(network, address string, _ syscall.RawConn) error {
	if network != "tcp4" && network != "tcp6" {
		return fmt.Errorf("webhook: network %s refused", network)
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("webhook: cannot parse %q: %w", address, err)
	}
	if err := p.checkAddr(ap.Addr().Unmap()); err != nil {
		return fmt.Errorf("webhook: address refused: %w", err)
	}
	return nil
}

// DialContext connects through the policy: it resolves with the policy's
// resolver and dials each address in turn, every connect checked by control.
func (p *Policy) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("webhook: bad port in %q", addr)
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else if ips, err = p.resolver.LookupNetIP(ctx, "ip", host); err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("webhook: %s has no address", host)
	}
	d := net.Dialer{Control: p.control}
	var first error
	for _, ip := range ips {
		c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(ip.Unmap(), uint16(port)).String())
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}
