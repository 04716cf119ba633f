// Package ui owns the operator page served at /ui on the ops listener: one
// row per app group (quota used/cap with the remaining slots, next reset and
// its countdown, backlog, drain ETA, pacing interval, state), a page per group
// (its last results and notices, its dead letters) and, when enabled and
// authenticated with the admin token, the pause, resume and replay actions.
//
// The page renders on the server with html/template from files embedded with
// go:embed: no build step, no CDN, no JavaScript needed (it refreshes itself
// with a meta refresh). Every number comes from the same status the control
// subject serves to `sendidctl quota --json`; the actions call the same queue
// functions as sendidctl. No key, token or admin token is ever rendered.
package ui
