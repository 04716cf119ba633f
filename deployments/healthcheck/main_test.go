package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) }))
	defer srv.Close()
	if err := check(srv.URL, time.Second); err != nil {
		t.Errorf("200: %v", err)
	}
	status = http.StatusServiceUnavailable
	if err := check(srv.URL, time.Second); err == nil {
		t.Error("503 passed the check")
	}
	srv.Close()
	if err := check(srv.URL, time.Second); err == nil {
		t.Error("a closed server passed the check")
	}
}
