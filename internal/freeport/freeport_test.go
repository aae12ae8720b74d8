package freeport

import (
	"net"
	"testing"
)

func TestOnReturnsAPortThatCanBeBound(t *testing.T) {
	addr, err := Addr("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("binding the free address %s: %v", addr, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}
