//go:build tools

// Package tools pins the command this module builds, so that `go mod tidy` keeps k8s.io/kubernetes and
// the go.sum lines of everything kube-apiserver imports. Built by scripts/build-kube-apiserver.sh:
//
//	go build -o <cache>/kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
