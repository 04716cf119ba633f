package worker_test

import (
	"io"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// BenchmarkDeferredLog is the cost of admission's "job deferred" line, one
// per deferred job, with the daemon's encoder (JSON, caller) at info level.
func BenchmarkDeferredLog(b *testing.B) {
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	log := zap.New(zapcore.NewCore(enc, zapcore.AddSync(io.Discard), zapcore.InfoLevel), zap.AddCaller())
	until, eta := time.Now().Add(time.Hour), time.Now().Add(90*time.Minute)
	b.ReportAllocs()
	for b.Loop() {
		log.Info("job deferred", zap.String("job_id", "bl-123456"), zap.String("app_group", "b0042"), zap.Time("deferred_until", until),
			zap.Time("eta", eta), zap.Int("position", 1234))
	}
}
