//go:build tools

// Package tools pins the commands this module builds, so that `go mod tidy` keeps k8s.io/kubernetes and
// the go.sum lines of everything they import. Built by scripts/build-kube-apiserver.sh:
//
//	go build -o <cache>/kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
//	go build -o <cache>/kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
//	go build -o <cache>/kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
