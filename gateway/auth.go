package gateway

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/sendid/sendid/config"
)

// Credential lets a Bearer token act for an app group: the group's Braze API
// key (so existing clients keep their key) or one of its gateway tokens.
type Credential struct {
	Group string
	Token config.Secret
}

// credential is a Credential as matched: only its digest is kept.
type credential struct {
	group string
	sum   [sha256.Size]byte
}

// compile digests the credentials. A token naming two groups is refused
// (the gateway could not tell them apart); the error names the groups,
// never the token. Empty tokens are skipped.
func compile(creds []Credential) ([]credential, error) {
	out := make([]credential, 0, len(creds))
	owner := map[[sha256.Size]byte]string{}
	var clashes []string
	for _, c := range creds {
		if c.Token.IsZero() {
			continue
		}
		sum := sha256.Sum256([]byte(c.Token.Reveal()))
		if g, ok := owner[sum]; ok && g != c.Group {
			clashes = append(clashes, fmt.Sprintf("app groups %s and %s share a key or gateway token; the gateway cannot tell them apart", g, c.Group))
			continue
		}
		owner[sum] = c.Group
		out = append(out, credential{group: c.Group, sum: sum})
	}
	if len(clashes) > 0 {
		sort.Strings(clashes)
		return nil, &config.Error{Problems: clashes}
	}
	return out, nil
}

// CheckCredentials reports a token that names two app groups.
func CheckCredentials(creds []Credential) error {
	_, err := compile(creds)
	return err
}

// SetCredentials replaces the tokens the gateway accepts (on a reload).
// On error the previous set stays.
func (g *Gateway) SetCredentials(creds []Credential) error {
	c, err := compile(creds)
	if err != nil {
		return err
	}
	g.creds.Store(&c)
	return nil
}

// authenticate returns the app group the request's Bearer token names. Every
// credential is compared, in constant time, whatever matches first.
func (g *Gateway) authenticate(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "Bearer ") {
		return "", false
	}
	token := strings.TrimSpace(h[7:])
	if token == "" {
		return "", false
	}
	sum := sha256.Sum256([]byte(token))
	group, found := "", 0
	for _, c := range *g.creds.Load() {
		if subtle.ConstantTimeCompare(sum[:], c.sum[:]) == 1 {
			group, found = c.group, 1
		}
	}
	return group, found == 1
}
