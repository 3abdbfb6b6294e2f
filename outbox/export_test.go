package outbox

// Parked tells how many deliveries of a webhook wait claimed ahead and how
// many attempts to it are in flight.
func Parked(o *Outbox, webhookID string) (parked, sending int) {
	o.d.mu.Lock()
	defer o.d.mu.Unlock()
	return len(o.d.parked[webhookID]), o.d.sending[webhookID]
}

// Admission is how many deliveries of w a claim may hold.
func Admission(o *Outbox, w *Webhook) int {
	o.d.mu.Lock()
	defer o.d.mu.Unlock()
	return o.d.admission(w)
}
