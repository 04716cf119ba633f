package queue

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestOversizedMetaErrorStatesItsSize(t *testing.T) {
	t.Parallel()
	meta := `"` + strings.Repeat("m", MaxMetaBytes+10) + `"`
	_, err := DecodeJob([]byte(`{"campaign_id":"c","meta":`+meta+`}`), 1<<20)
	var je *JobError
	if !errors.As(err, &je) || je.Code != CodeInvalidJob {
		t.Fatalf("want invalid_job, got %v", err)
	}
	want := fmt.Sprintf("meta is %d bytes, at most %d allowed", len(meta), MaxMetaBytes)
	if je.Message != want {
		t.Fatalf("message %q, want %q", je.Message, want)
	}
}
