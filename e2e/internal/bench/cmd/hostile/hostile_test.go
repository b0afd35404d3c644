//go:build linux

package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestNewcomers counts only 200s: a server that closes every connection
// serves no newcomer.
func TestNewcomers(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hello\n") }))
	defer ok.Close()
	if got := newcomers(ok.Listener.Addr().String(), 20); !strings.HasPrefix(got, "20 of 20 ") {
		t.Errorf("newcomers(a server answering 200) = %q; want 20 of 20", got)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // ends when ln closes
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	if got := newcomers(ln.Addr().String(), 20); !strings.HasPrefix(got, "0 of 20 ") || strings.Contains(got, "harness") {
		t.Errorf("newcomers(a server closing every connection) = %q; want 0 of 20, the service's doing", got)
	}
}

// TestUnfinished sends exactly the bytes asked, never the blank line that
// ends a header block.
func TestUnfinished(t *testing.T) {
	client, server := net.Pipe()
	got := make(chan string)
	go func() {
		b, _ := io.ReadAll(server)
		got <- string(b)
	}()
	if err := unfinished(7000)(client); err != nil {
		t.Fatalf("unfinished(7000): %v", err)
	}
	client.Close()
	if b := <-got; len(b) != 7000 || !strings.HasPrefix(b, "GET /hello HTTP/1.1\r\n") || strings.Contains(b, "\r\n\r\n") {
		t.Errorf("unfinished(7000) sent %d bytes, %q...; want 7000 bytes of an unfinished GET /hello", len(b), b[:min(len(b), 40)])
	}
}

func TestHarnessErr(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("socket", syscall.EMFILE)}, true},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EADDRNOTAVAIL)}, true},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, false},
		{io.EOF, false},
		{nil, false},
	} {
		if got := harnessErr(c.err); got != c.want {
			t.Errorf("harnessErr(%v) = %t; want %t", c.err, got, c.want)
		}
	}
}
