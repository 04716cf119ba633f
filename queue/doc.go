// Package queue owns everything NATS: connecting (reconnect forever, creds,
// nkey, TLS), creating the SENDID stream, the results stream, the KV buckets
// and the consumers; the subject layout and the rules for untrusted reply
// subjects; the strict job codec and the result format; the job and pair
// records; and publishing results with Nats-Msg-Id so re-publications
// de-duplicate. It knows nothing of Braze or quotas.
package queue
