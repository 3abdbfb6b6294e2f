// Package receiver verifies inbound webhook signatures in front of reverse_proxy.
package receiver
