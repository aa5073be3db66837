<?php

declare(strict_types=1);

namespace Courser\Tests;

use Courser\Exception\ProtocolException;
use Courser\Exception\RelayException;
use Courser\Exception\StreamStoppedException;
use Courser\Frame;
use Courser\Payload;
use Courser\Relay\StreamRelay;
use Courser\Worker;
use PHPUnit\Framework\TestCase;

require_once __DIR__ . '/TestSupport.php';

/**
 * Drives a Worker over a socket pair: the test plays the server on one end.
 */
final class WorkerTest extends TestCase
{
    /** @var resource the server's end of the socket pair */
    private $server;

    /** @var resource the worker's end of the socket pair */
    private $client;

    private Worker $worker;

    protected function setUp(): void
    {
        [$this->server, $this->client] = TestSupport::socketPair();
        $this->worker = new Worker(new StreamRelay($this->client, $this->client));
    }

    protected function tearDown(): void
    {
        foreach ([$this->server, $this->client] as $socket) {
            if (is_resource($socket)) {
                fclose($socket);
            }
        }
    }

    public function testThePidRequestIsAnsweredAndTheStopCommandEndsTheLoop(): void
    {
        $this->serverSends(TestSupport::vector('pid_request'), TestSupport::vector('stop'));

        self::assertNull($this->worker->waitPayload());

        $answer = TestSupport::readRawFrame($this->server);
        $expected = Frame::fromBytes(TestSupport::vector('pid_response'));
        self::assertSame(
            Frame::encode($expected->flags, $expected->options, '{"pid":' . getmypid() . '}', $expected->byte10),
            $answer,
        );
        self::assertSame("\x13\x01", substr($answer, 0, 2));
        self::assertSame([], TestSupport::drainRawFrames($this->server));
    }

    public function testAPidRequestBetweenJobsIsAnsweredAndTheJobFollows(): void
    {
        $job = TestSupport::vector('http_request_json_get');
        $this->serverSends(TestSupport::vector('pid_request'), TestSupport::vector('pid_request'), $job);

        $payload = $this->worker->waitPayload();

        self::assertNotNull($payload);
        self::assertCount(2, TestSupport::drainRawFrames($this->server));
        $frame = Frame::fromBytes($job);
        self::assertSame(Frame::CODEC_JSON, $payload->flags);
        self::assertSame(substr($frame->payload, 0, $frame->options[0]), $payload->context);
        self::assertSame(substr($frame->payload, $frame->options[0]), $payload->body);
        self::assertStringStartsWith('{"remoteAddr":', $payload->context);
    }

    public function testAJobSplitsIntoContextBodyAndFlags(): void
    {
        $this->serverSends(TestSupport::vector('jobs_request_fail'));

        $payload = $this->worker->waitPayload();

        self::assertNotNull($payload);
        self::assertSame(Frame::CODEC_RAW, $payload->flags);
        self::assertSame('raw payload', $payload->body);
        self::assertStringContainsString('"headers":null', $payload->context);
    }

    public function testAnEmptyDataFrameEndsTheLoop(): void
    {
        $this->serverSends(Frame::encode(Frame::CODEC_PROTO, [0], ''));

        self::assertNull($this->worker->waitPayload());
    }

    public function testAJobWithAnEmptyContextIsStillAJob(): void
    {
        $this->serverSends(Frame::encode(Frame::CODEC_JSON, [0], 'body'));

        self::assertSame('body', $this->worker->waitPayload()?->body);
    }

    public function testLeftoverPongAndStopFramesAreSkipped(): void
    {
        $this->serverSends(TestSupport::vector('pong'), TestSupport::vector('stream_stop'), TestSupport::vector('jobs_request_ok'));

        self::assertSame('{"to":"a@b.c"}', $this->worker->waitPayload()?->body);
    }

    public function testAnUnknownControlFrameIsAnError(): void
    {
        $this->serverSends(Frame::encode(0x09, [], '{"reload":true}'));

        $this->expectException(ProtocolException::class);
        $this->expectExceptionMessage('Unknown control frame');
        $this->worker->waitPayload();
    }

    public function testAControlFrameThatIsNotJsonIsAnError(): void
    {
        $this->serverSends(Frame::encode(0x09, [], 'pid please'));

        $this->expectException(ProtocolException::class);
        $this->expectExceptionMessage('must hold JSON');
        $this->worker->waitPayload();
    }

    public function testAJobWithoutTheContextLengthIsAnError(): void
    {
        $this->serverSends(Frame::encode(Frame::CODEC_JSON, [], 'body'));

        $this->expectException(ProtocolException::class);
        $this->worker->waitPayload();
    }

    public function testAContextLengthBeyondThePayloadIsAnError(): void
    {
        $this->serverSends(Frame::encode(Frame::CODEC_JSON, [5], 'body'));

        $this->expectException(ProtocolException::class);
        $this->expectExceptionMessage('exceeds');
        $this->worker->waitPayload();
    }

    public function testEofWhileWaitingIsAClearError(): void
    {
        fclose($this->server);

        $this->expectException(RelayException::class);
        $this->expectExceptionMessage('EOF while waiting for a frame');
        $this->worker->waitPayload();
    }

    public function testRespondReproducesTheCapturedJsonResponse(): void
    {
        $vector = TestSupport::vector('http_response_json_get');
        $frame = Frame::fromBytes($vector);
        $context = substr($frame->payload, 0, $frame->options[0]);

        $this->worker->respond(new Payload(substr($frame->payload, $frame->options[0]), $context), Frame::CODEC_JSON);

        self::assertSame($vector, TestSupport::readRawFrame($this->server));
    }

    public function testRespondWithoutCodecUsesFlagsZero(): void
    {
        $this->worker->respond(new Payload('{"type":0,"data":[]}'));

        self::assertSame(TestSupport::vector('jobs_response_ok'), TestSupport::readRawFrame($this->server));
    }

    public function testErrorMatchesTheCapturedErrorFrame(): void
    {
        $this->worker->error('boom: worker error');

        self::assertSame(TestSupport::vector('http_response_error'), TestSupport::readRawFrame($this->server));
    }

    public function testStopMatchesTheCapturedWorkerStopRequest(): void
    {
        $this->worker->stop();

        self::assertSame(TestSupport::vector('worker_stop_request'), TestSupport::readRawFrame($this->server));
    }

    public function testAGeneratorReproducesTheCapturedStreamFrames(): void
    {
        $first = Frame::fromBytes(TestSupport::vector('http_response_stream_01'));
        $context = substr($first->payload, 0, $first->options[0]);
        $chunks = (static function (): \Generator {
            for ($i = 1; $i <= 7; ++$i) {
                yield "chunk-$i;";
            }

            return 'end';
        })();

        self::assertTrue($this->worker->respondStream($chunks, $context, Frame::CODEC_PROTO));

        $frames = TestSupport::drainRawFrames($this->server);
        self::assertCount(8, $frames);
        foreach ($frames as $i => $bytes) {
            self::assertSame(TestSupport::vector(sprintf('http_response_stream_%02d', $i + 1)), $bytes, "frame $i");
        }
    }

    public function testOnlyTheSixthFramePingsWhenNoPongComes(): void
    {
        $this->worker->respondStream($this->numberedChunks(14), 'ctx', Frame::CODEC_JSON);

        $frames = array_map([Frame::class, 'fromBytes'], TestSupport::drainRawFrames($this->server));
        self::assertSame(
            array_merge([1, 1, 1, 1, 1, 5], array_fill(0, 8, 1), [0]),
            array_map(static fn (Frame $f): int => $f->byte10, $frames),
        );
        foreach ($frames as $frame) {
            self::assertSame(Frame::CODEC_JSON, $frame->flags);
            self::assertSame([3], $frame->options);
            self::assertStringStartsWith('ctx', $frame->payload);
        }
        self::assertSame('ctxchunk14', $frames[13]->payload);
        self::assertSame('ctx', $frames[14]->payload);
    }

    public function testAPongRestartsTheCountSoTheWorkerPingsFiveFramesLater(): void
    {
        $server = $this->server;
        $chunks = (static function () use ($server): \Generator {
            for ($i = 1; $i <= 14; ++$i) {
                if ($i === 8) {
                    // Frames 1..7 are out, 6 carried the PING: answer it now.
                    fwrite($server, TestSupport::vector('pong'));
                }
                yield "chunk$i";
            }

            return 'end';
        })();

        self::assertTrue($this->worker->respondStream($chunks, '', Frame::CODEC_JSON));

        $frames = array_map([Frame::class, 'fromBytes'], TestSupport::drainRawFrames($this->server));
        // The PONG is read before frame 8 is sent; frames 8..12 go out, frame 13 pings again.
        self::assertSame(
            [1, 1, 1, 1, 1, 5, 1, 1, 1, 1, 1, 1, 5, 1, 0],
            array_map(static fn (Frame $f): int => $f->byte10, $frames),
        );
        self::assertSame('end', $frames[14]->payload);
    }

    public function testAStopIsThrownIntoTheGeneratorAndAcknowledged(): void
    {
        $server = $this->server;
        $caught = null;
        $chunks = (static function () use ($server, &$caught): \Generator {
            try {
                for ($i = 1; $i <= 20; ++$i) {
                    if ($i === 8) {
                        fwrite($server, TestSupport::vector('stream_stop'));
                    }
                    yield "chunk$i";
                }
            } catch (StreamStoppedException $e) {
                $caught = $e;
            }

            return 'not sent';
        })();

        self::assertFalse($this->worker->respondStream($chunks, 'ctx', Frame::CODEC_JSON));

        self::assertInstanceOf(StreamStoppedException::class, $caught);
        $frames = TestSupport::drainRawFrames($this->server);
        // Chunks 1..7 left before the STOP was seen (it is read before chunk 8 would be sent).
        self::assertCount(8, $frames);
        self::assertSame(Frame::encode(Frame::CODEC_JSON, [3], 'ctxchunk7', Frame::STREAM), $frames[6]);
        self::assertSame(TestSupport::vector('stream_stop_ack'), $frames[7]);
    }

    public function testAGeneratorThatIgnoresTheStopIsClosedQuietly(): void
    {
        $this->serverSends(TestSupport::vector('stream_stop'));

        self::assertFalse($this->worker->respondStream($this->numberedChunks(50), '', Frame::CODEC_JSON));

        $frames = TestSupport::drainRawFrames($this->server);
        self::assertCount(7, $frames);
        self::assertSame(TestSupport::vector('stream_stop_ack'), $frames[6]);
    }

    public function testAPidRequestDuringAStreamIsAnswered(): void
    {
        $this->serverSends(TestSupport::vector('pid_request'));

        self::assertTrue($this->worker->respondStream($this->numberedChunks(7), '', Frame::CODEC_JSON));

        $frames = array_map([Frame::class, 'fromBytes'], TestSupport::drainRawFrames($this->server));
        self::assertCount(9, $frames);
        self::assertSame(Frame::CONTROL, $frames[6]->flags);
        self::assertSame('{"pid":' . getmypid() . '}', $frames[6]->payload);
        self::assertSame('chunk7', $frames[7]->payload);
    }

    public function testAnArrayStreamsItsItemsAndEndsWithAnEmptyBody(): void
    {
        self::assertTrue($this->worker->respondStream(['a', 'b'], 'c'));

        self::assertSame(
            [Frame::encode(0, [1], 'ca', Frame::STREAM), Frame::encode(0, [1], 'cb', Frame::STREAM), Frame::encode(0, [1], 'c')],
            TestSupport::drainRawFrames($this->server),
        );
    }

    public function testAnExceptionFromTheGeneratorPropagatesAndSendsNothingMore(): void
    {
        $chunks = (static function (): \Generator {
            yield 'one';
            throw new \DomainException('broken');
        })();

        try {
            $this->worker->respondStream($chunks);
            self::fail('The exception was swallowed.');
        } catch (\DomainException $e) {
            self::assertSame('broken', $e->getMessage());
        }

        self::assertSame([Frame::encode(0, [0], 'one', Frame::STREAM)], TestSupport::drainRawFrames($this->server));
    }

    private function serverSends(string ...$frames): void
    {
        fwrite($this->server, implode('', $frames));
    }

    private function numberedChunks(int $count): \Generator
    {
        for ($i = 1; $i <= $count; ++$i) {
            yield "chunk$i";
        }
    }
}
