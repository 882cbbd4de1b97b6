// Stands in for github.com/nats-io/jsm.go in k1s's build (see README.md).
module github.com/nats-io/jsm.go

go 1.24

require github.com/nats-io/nats.go v1.55.0
