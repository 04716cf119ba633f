package braze

import (
	"errors"
	"fmt"
)

// Identifier limits from Braze's "API identifier types" page; send_id is
// "ASCII only, at most 64 characters". The campaign_id bound is sendid's own.
const (
	MaxCampaignIDBytes = 128
	MaxSendIDBytes     = 64
)

// ValidateCampaignID reports whether s is a campaign_id sendid will send:
// non-empty printable ASCII of at most MaxCampaignIDBytes bytes.
func ValidateCampaignID(s string) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	return printable(s, MaxCampaignIDBytes)
}

// ValidateSendID reports whether s is a valid send_id: printable ASCII,
// 1 to MaxSendIDBytes bytes.
func ValidateSendID(s string) error {
	if s == "" {
		return errors.New("must not be empty when present")
	}
	return printable(s, MaxSendIDBytes)
}

func printable(s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("is %d bytes, at most %d allowed", len(s), max)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return fmt.Errorf("byte %d (0x%02x) is not printable ASCII", i, c)
		}
	}
	return nil
}
