package config

import (
	"fmt"
	"os"
	"strings"
)

// UI configures the operator page at /ui on the ops listener.
type UI struct {
	Enabled bool `yaml:"enabled"` // true
	// Actions shows pause, resume and replay buttons to requests that carry
	// the admin token (admin_token_file or SENDID_ADMIN_TOKEN). false.
	Actions bool `yaml:"actions"`
}

// AdminToken reads the operators' admin token: the file named by
// admin_token_file (or SENDID_ADMIN_TOKEN_FILE), else SENDID_ADMIN_TOKEN.
// Empty when neither is set.
func (c *Config) AdminToken(getenv func(string) string) (Secret, error) {
	path := c.AdminTokenFile
	if v := getenv("SENDID_ADMIN_TOKEN_FILE"); v != "" {
		path = v
	}
	v := getenv("SENDID_ADMIN_TOKEN")
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", &Error{Problems: []string{fmt.Sprintf("admin_token_file: %v", err)}}
		}
		v = string(b)
	}
	v = strings.TrimSpace(v)
	if v != "" && len(v) < 16 {
		return "", &Error{Problems: []string{"admin token: must be at least 16 characters"}}
	}
	return Secret(v), nil
}
