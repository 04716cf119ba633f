package config

import "strings"

// redactUserInfo returns item (one URL of the list) fit for an error
// message. It does not parse: a password may hold '/', '#', '?' or ',',
// which make a URL parser fail or split it. When the list has user info
// anywhere, everything from the first "://" (or the start) to the last '@'
// of the whole list is hidden, since a ',' in a password can cut a URL in
// two and leave half of the password in another item.
func redactUserInfo(list, item string) string {
	at := strings.LastIndexByte(list, '@')
	if at < 0 {
		return item
	}
	start := 0
	if i := strings.Index(list, "://"); i >= 0 && i < at {
		start = i + 3
	}
	return strings.TrimSpace(list[:start] + "[redacted]" + list[at:])
}
