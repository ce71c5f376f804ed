// franz-go, the Go peer of franz's benchmarks (issue #16): one process per
// run, driven like the other peers and printing the same RESULT line.
//
//	franz-go-bench produce --bootstrap B --topic T --records N --size S [--payload-file F]
//	    [--compression none|lz4|zstd] [--transaction N]
//	franz-go-bench consume --bootstrap B --topic T --records N
//
// produce prints `RESULT records=N secs=S failed=F`; consume prints
// `RESULT records=N secs=S bytes=B`. Settings are franz-go's own
// recommendations for throughput, written down in the report: acks=all with
// idempotence (its default), a 5 ms linger as every peer gets, 1 MiB
// batches, a buffer of 1,000,000 records and 64 MiB, no compression; fetches of up to
// 50 MiB, 1 MiB per partition, 500 ms max wait.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: franz-go-bench produce|consume [flags]")
		os.Exit(2)
	}
	mode := os.Args[1]
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	bootstrap := fs.String("bootstrap", "127.0.0.1:9092", "bootstrap servers, comma separated")
	topic := fs.String("topic", "bench", "topic")
	records := fs.Int64("records", 1000000, "records")
	size := fs.Int("size", 100, "value size in bytes (produce)")
	transaction := fs.Int64("transaction", 0, "commit a transaction every N records (produce; 0: none)")
	payloadFile := fs.String("payload-file", "", "send this file's bytes as every value (produce)")
	compression := fs.String("compression", "none", "none, gzip, snappy, lz4 or zstd (produce)")
	if err := fs.Parse(os.Args[2:]); err != nil {
		os.Exit(2)
	}
	seeds := strings.Split(*bootstrap, ",")
	var err error
	switch mode {
	case "produce":
		value := []byte(strings.Repeat("x", *size))
		if *payloadFile != "" {
			if value, err = os.ReadFile(*payloadFile); err != nil {
				break
			}
		}
		var codec kgo.CompressionCodec
		if codec, err = codecNamed(*compression); err != nil {
			break
		}
		err = produce(seeds, *topic, *records, value, codec, *transaction)
	case "consume":
		err = consume(seeds, *topic, *records)
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "franz-go-bench:", err)
		os.Exit(1)
	}
}

func codecNamed(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.NoCompression(), fmt.Errorf("unknown compression %q", name)
}

func produce(seeds []string, topic string, records int64, value []byte, codec kgo.CompressionCodec, transaction int64) error {
	opts := []kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(5 * time.Millisecond),
		kgo.ProducerBatchMaxBytes(1 << 20),
		kgo.MaxBufferedRecords(1000000),
		// The same 64 MiB of buffer as every other producer (franz
		// buffer_memory, librdkafka queue.buffering.max.kbytes, Java
		// buffer.memory), so that peak RSS compares like with like.
		kgo.MaxBufferedBytes(64 << 20),
		kgo.ProducerBatchCompression(codec),
	}
	if transaction > 0 {
		opts = append(opts, kgo.TransactionalID(fmt.Sprintf("franz-go-produce-%d", os.Getpid())))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx := context.Background()
	var failed atomic.Int64
	done := func(_ *kgo.Record, err error) {
		if err != nil {
			failed.Add(1)
		}
	}
	started := time.Now()
	for i := int64(0); i < records; i++ {
		if transaction > 0 && i%transaction == 0 {
			if i > 0 {
				if err := cl.Flush(ctx); err != nil {
					return err
				}
				if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
					return err
				}
			}
			if err := cl.BeginTransaction(); err != nil {
				return err
			}
		}
		cl.Produce(ctx, &kgo.Record{Value: value}, done)
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	if transaction > 0 {
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			return err
		}
	}
	secs := time.Since(started).Seconds()
	fmt.Printf("RESULT records=%d secs=%.3f failed=%d\n", records, secs, failed.Load())
	return nil
}

func consume(seeds []string, topic string, records int64) error {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(seeds...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(50<<20),
		kgo.FetchMaxPartitionBytes(1<<20),
		kgo.FetchMaxWait(500*time.Millisecond),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx := context.Background()
	var got, bytes int64
	started := time.Now()
	for got < records {
		fetches := cl.PollFetches(ctx)
		if errs := fetches.Errors(); len(errs) > 0 {
			return fmt.Errorf("fetch: %v", errs[0].Err)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			got++
			bytes += int64(len(r.Value))
		})
	}
	secs := time.Since(started).Seconds()
	fmt.Printf("RESULT records=%d secs=%.3f bytes=%d\n", got, secs, bytes)
	return nil
}
