package worker

// StageTimer is told when one step of a job starts and returns the
// function that ends it. sendid-bench sets it to trace where a job's time
// and round trips go; it is nil in production, where each step costs one
// nil check. parallel says the step's JetStream requests, if several, are
// made concurrently (one wait); otherwise they follow one another. It is
// called from the worker's goroutines concurrently.
type StageTimer func(stage string, parallel bool) (end func())

// The steps a StageTimer sees. Admission steps are per batch; lane steps
// are per job, in the order a first delivery of a new pair meets them;
// StagePairCreated runs alongside the steps after the call.
const (
	StageAdmissionRecords  = "admission: record reads"
	StageAdmissionForecast = "admission: forecast"
	StageAdmissionConfirm  = "admission: ready publish ack"
	StageAdmissionAck      = "admission: ack"
	StagePull              = "lane: pull"
	StageReserve           = "lane: pacer + ledger reserve"
	StageClaimRead         = "lane: record reads"
	StagePairReserve       = "lane: pair reservation"
	StageJobRecord         = "lane: job record (call open)"
	StageBraze             = "braze call"
	StagePostCall          = "lane: ledger settle"
	StagePairCreated       = "lane: pair record (created), alongside"
	StageFinalRecord       = "lane: final job record"
	StageResultPublish     = "lane: result publish"
	StageAck               = "lane: ack"
)

func noStage() {}

// stage starts the step name when a StageTimer is set.
func (w *Worker) stage(name string, parallel bool) func() {
	if w.o.Stages == nil {
		return noStage
	}
	return w.o.Stages(name, parallel)
}
