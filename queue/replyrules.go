package queue

import (
	"fmt"
	"strings"
)

// CheckFor is Check for a job of group: under <prefix>.results.> only the
// group's own results subject (and subjects below it) is accepted, so that a
// job cannot publish into, or shadow, another group's results.
func (r ReplyRules) CheckFor(group, subj string) error {
	if err := r.Check(subj); err != nil {
		return err
	}
	root := r.Prefix + ".results"
	if subj == root || strings.HasPrefix(subj, root+".") {
		own := r.Results(group)
		if subj != own && !strings.HasPrefix(subj, own+".") {
			return fmt.Errorf("%w: %q is not app group %s's results subject %s", ErrReplyTo, subj, group, own)
		}
	}
	return nil
}
