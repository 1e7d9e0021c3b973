package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flapjack-dev/flapjack/core"
)

func newTok(t testing.TB, s *Store, user, name string) (plaintext string, tok Token) {
	t.Helper()
	plaintext = "fj_live_" + core.NewID("") + core.NewID("")
	h := sha256.Sum256([]byte(plaintext))
	tok, err := s.CreateToken(context.Background(), NewToken{UserID: user, Name: name, Prefix: plaintext[:14], Hash: h[:]})
	if err != nil {
		t.Fatal(err)
	}
	return plaintext, tok
}

func hashOf(p string) []byte { h := sha256.Sum256([]byte(p)); return h[:] }

// TestOrgsUsersMembers: names are unique, lookups take an id or a name,
// membership is idempotent and needs both ends.
func TestOrgsUsersMembers(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	owner := mustOwner(t, s)
	acme, err := s.CreateOrg(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateOrg(ctx, "acme"); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate org name: %v", err)
	}
	alice, err := s.CreateUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUser(ctx, "alice"); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate user name: %v", err)
	}
	for _, key := range []string{acme.ID, "acme"} {
		if o, err := s.FindOrg(ctx, key); err != nil || o.ID != acme.ID {
			t.Errorf("FindOrg(%q) = %+v, %v", key, o, err)
		}
	}
	if u, err := s.FindUser(ctx, "alice"); err != nil || u.ID != alice.ID {
		t.Errorf("FindUser = %+v, %v", u, err)
	}
	if _, err := s.FindOrg(ctx, "nope"); !errors.Is(err, core.ErrNotFound) {
		t.Errorf("FindOrg(nope) = %v", err)
	}
	for range 2 {
		if err := s.AddMember(ctx, acme.ID, alice.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddMember(ctx, acme.ID, "user-nope"); !errors.Is(err, core.ErrNotFound) {
		t.Errorf("AddMember of an unknown user = %v", err)
	}
	if err := s.AddMember(ctx, owner.OrgID, alice.ID); err != nil {
		t.Fatal(err)
	}
	users, err := s.ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	orgsOf := map[string]int{}
	for _, u := range users {
		orgsOf[u.ID] = len(u.OrgIDs)
	}
	if len(users) != 2 || orgsOf[owner.UserID] != 1 || orgsOf[alice.ID] != 2 {
		t.Errorf("users = %+v", users)
	}
	orgs, err := s.ListOrgs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Both orgs may be made within one millisecond: match them by name.
	members := map[string]int{}
	for _, o := range orgs {
		members[o.Name] = o.Members
	}
	if len(orgs) != 2 || members["default"] != 2 || members["acme"] != 1 {
		t.Errorf("orgs = %+v", orgs)
	}
}

// TestTokenActor: a token resolves to its user's orgs (from SQL, sorted,
// never nil), with a default org only for a single-org user; revoked and
// unknown tokens are not found.
func TestTokenActor(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	owner := mustOwner(t, s)
	ownerTok, _ := newTok(t, s, owner.UserID, "owner")
	a, _, err := s.ActorForToken(ctx, hashOf(ownerTok))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(core.Actor{UserID: owner.UserID, OrgIDs: []string{owner.OrgID}, DefaultOrgID: owner.OrgID}, a); diff != "" {
		t.Errorf("owner's actor (-want +got):\n%s", diff)
	}

	u, _ := s.CreateUser(ctx, "carol")
	lonely, _ := newTok(t, s, u.ID, "none")
	a, _, err = s.ActorForToken(ctx, hashOf(lonely))
	if err != nil || a.OrgIDs == nil || len(a.OrgIDs) != 0 || a.DefaultOrgID != "" || a.AllOrgs {
		t.Errorf("a user in no org: %+v %v (OrgIDs must be empty, not nil)", a, err)
	}
	o1, _ := s.CreateOrg(ctx, "one")
	o2, _ := s.CreateOrg(ctx, "two")
	s.AddMember(ctx, o1.ID, u.ID)
	s.AddMember(ctx, o2.ID, u.ID)
	a, id, err := s.ActorForToken(ctx, hashOf(lonely))
	if err != nil || len(a.OrgIDs) != 2 || a.DefaultOrgID != "" || a.OrgIDs[0] > a.OrgIDs[1] {
		t.Errorf("a user in two orgs: %+v %v", a, err)
	}

	if err := s.RevokeToken(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeToken(ctx, id); err != nil {
		t.Errorf("revoking twice: %v", err)
	}
	if err := s.RevokeToken(ctx, "tok-nope"); !errors.Is(err, core.ErrNotFound) {
		t.Errorf("revoking an unknown token: %v", err)
	}
	if _, _, err := s.ActorForToken(ctx, hashOf(lonely)); !errors.Is(err, core.ErrNotFound) {
		t.Errorf("a revoked token: %v", err)
	}
	if _, _, err := s.ActorForToken(ctx, hashOf("fj_live_unknown")); !errors.Is(err, core.ErrNotFound) {
		t.Errorf("an unknown token: %v", err)
	}
	toks, err := s.ListTokens(ctx)
	if err != nil || len(toks) != 2 || toks[1].RevokedAt == nil || toks[1].UserName != "carol" || toks[0].Prefix != ownerTok[:14] {
		t.Errorf("tokens = %+v, %v", toks, err)
	}
	if _, err := s.CreateToken(ctx, NewToken{UserID: "user-nope", Name: "x", Prefix: "p", Hash: hashOf("x")}); !errors.Is(err, core.ErrNotFound) {
		t.Errorf("a token of an unknown user: %v", err)
	}
}

// TestFirstTokenOnlyOnce: of many concurrent first starts, one mints.
func TestFirstTokenOnlyOnce(t *testing.T) {
	ctx := context.Background()
	s, path := newStore(t)
	owner := mustOwner(t, s)
	s2 := openAt(t, path)
	results := make(chan bool, 8)
	for i := range 8 {
		st := s
		if i%2 == 1 {
			st = s2
		}
		go func() {
			p := "fj_live_first" + core.NewID("")
			_, ok, err := st.CreateFirstToken(ctx, NewToken{UserID: owner.UserID, Name: "first", Prefix: p[:14], Hash: hashOf(p)})
			if err != nil {
				t.Error(err)
			}
			results <- ok
		}()
	}
	created := 0
	for range 8 {
		if <-results {
			created++
		}
	}
	if created != 1 {
		t.Errorf("%d first tokens", created)
	}
}

// TestTouchTokenAtMostOncePerMinute: last-used writes are skipped when the
// recorded time is less than a minute old.
func TestTouchTokenAtMostOncePerMinute(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	owner := mustOwner(t, s)
	_, tok := newTok(t, s, owner.UserID, "t")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		at   time.Time
		want time.Time
	}{{t0, t0}, {t0.Add(30 * time.Second), t0}, {t0.Add(61 * time.Second), t0.Add(61 * time.Second)}} {
		if err := s.TouchToken(ctx, tok.ID, c.at); err != nil {
			t.Fatal(err)
		}
		toks, _ := s.ListTokens(ctx)
		if toks[0].LastUsedAt == nil || !toks[0].LastUsedAt.Equal(c.want) {
			t.Errorf("after touching at %v: last used %v, want %v", c.at, toks[0].LastUsedAt, c.want)
		}
	}
}

// TestReadCacheSeesEveryCommit: answers come from memory only while nothing
// was committed; a change through another Store on the same file (another
// process, in effect: its own connections) is seen on the very next read,
// and so is a revocation.
func TestReadCacheSeesEveryCommit(t *testing.T) {
	ctx := context.Background()
	s, path := newStore(t)
	owner := mustOwner(t, s)
	other := openAt(t, path)
	c, err := NewReadCache(s, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	sess := testSession(owner.OrgID, "ca-a", 1)
	createSession(t, s, sess)
	plain, tok := newTok(t, s, owner.UserID, "t")
	for range 3 { // fill, then hit
		got, err := c.GetSession(ctx, sess.ID)
		if err != nil || got.Status != sess.Status {
			t.Fatalf("GetSession = %+v, %v", got, err)
		}
		if _, _, err := c.ActorForToken(ctx, hashOf(plain)); err != nil {
			t.Fatal(err)
		}
		if ms, err := c.ListMessages(ctx, sess.ID); err != nil || len(ms) != 1 {
			t.Fatalf("ListMessages = %v, %v", ms, err)
		}
	}
	c.mu.Lock()
	n := len(c.sessions) + len(c.actors) + len(c.messages)
	c.mu.Unlock()
	if n != 3 {
		t.Fatalf("%d cached answers, want 3", n)
	}

	// Another "process" changes the session and revokes the token.
	cur, _ := other.GetSession(ctx, sess.ID)
	cur.Status = core.StatusCancelled
	if _, err := other.Apply(ctx, core.Change{Session: cur, Messages: []core.Message{{ID: "msg-2", SessionID: sess.ID, Role: "user", Prompt: "more", Status: core.MessageQueued, CreatedAt: at(5)}}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.GetSession(ctx, sess.ID); got.Status != core.StatusCancelled {
		t.Errorf("after another store's commit the cache answered %s", got.Status)
	}
	if ms, _ := c.ListMessages(ctx, sess.ID); len(ms) != 2 {
		t.Errorf("after another store's commit: %d messages", len(ms))
	}
	if err := other.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ActorForToken(ctx, hashOf(plain)); !errors.Is(err, core.ErrNotFound) {
		t.Errorf("a token revoked by another store still resolves: %v", err)
	}
	// A change through the cache's own store is seen too.
	cur, _ = s.GetSession(ctx, sess.ID)
	cur.Archived = true
	if _, err := s.Apply(ctx, core.Change{Session: cur}); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.GetSession(ctx, sess.ID); !got.Archived {
		t.Error("a change through the same store was not seen")
	}
	if _, err := c.GetSession(ctx, "cs-nope"); !errors.Is(err, core.ErrNotFound) {
		t.Errorf("unknown session: %v", err)
	}
}

// TestTokenPlaintextNeverStored: only the hash reaches the files (database,
// WAL, SHM), checked byte by byte while open and after close.
func TestTokenPlaintextNeverStored(t *testing.T) {
	ctx := context.Background()
	s, path := newStore(t)
	owner := mustOwner(t, s)
	var plains []string
	for i := range 20 {
		p, _ := newTok(t, s, owner.UserID, "t")
		plains = append(plains, p)
		if i%2 == 0 {
			s.ActorForToken(ctx, hashOf(p))
		}
	}
	scan := func(when string) {
		files, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "*"))
		var all []byte
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, b...)
			for _, p := range plains {
				// The random part alone must not be there either.
				if bytes.Contains(b, []byte(p)) || bytes.Contains(b, []byte(p[14:])) {
					t.Errorf("%s: %s holds a token's plaintext", when, filepath.Base(f))
				}
			}
		}
		if !bytes.Contains(all, hashOf(plains[0])) {
			t.Errorf("%s: the hash is nowhere either; is the scan reading the right files?", when)
		}
	}
	scan("open")
	s.Close()
	scan("closed")
}
