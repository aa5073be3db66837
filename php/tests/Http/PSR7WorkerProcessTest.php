<?php

declare(strict_types=1);

namespace Courser\Tests\Http;

use Courser\Frame;
use Courser\Http\Proto;
use Courser\Tests\TestSupport;
use PHPUnit\Framework\TestCase;

require_once __DIR__ . '/Psr7Support.php';

/**
 * Runs fixtures/psr7_worker.php as a real child process over pipes, as the
 * server does, and reads its frames as they come.
 */
final class PSR7WorkerProcessTest extends TestCase
{
    private const BIG_SIZE = 5 * 1024 * 1024;

    /** @var resource|null */
    private $process;

    /** @var array<int, resource> */
    private array $pipes = [];

    private string $dir;

    protected function setUp(): void
    {
        if (!Psr7Support::loadNyholm()) {
            self::markTestSkipped('nyholm/psr7 is not installed: apt-get install php-nyholm-psr7');
        }

        $this->dir = Psr7Support::tempDir();
        $big = '';
        for ($i = 0; strlen($big) < self::BIG_SIZE; ++$i) {
            $big .= sprintf('%07d|', $i);
        }
        file_put_contents($this->dir . '/big', substr($big, 0, self::BIG_SIZE));

        $environment = getenv();
        unset($environment['RR_RELAY']);
        $this->process = proc_open(
            [PHP_BINARY, __DIR__ . '/fixtures/psr7_worker.php'],
            [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']],
            $this->pipes,
            null,
            ['COURSER_BIG_FILE' => $this->dir . '/big'] + $environment,
        );
        self::assertIsResource($this->process);
    }

    protected function tearDown(): void
    {
        if (is_resource($this->process)) {
            foreach ($this->pipes as $pipe) {
                if (is_resource($pipe)) {
                    fclose($pipe);
                }
            }
            proc_terminate($this->process);
            proc_close($this->process);
        }
        Psr7Support::removeDir($this->dir);
    }

    public function testAFiveMegabyteBodyArrivesInStreamedChunksAndMemoryStaysFlat(): void
    {
        $frames = $this->exchange('/big');

        self::assertCount(20, $frames, 'a 5 MiB body in 256 KiB chunks, the last one in the final frame');
        $body = '';
        foreach ($frames as $i => $frame) {
            self::assertSame(Frame::CODEC_PROTO, $frame->flags);
            self::assertSame($i === 19 ? 0 : Frame::STREAM, $frame->byte10 & ~Frame::PING, "frame $i");
            $context = substr($frame->payload, 0, $frame->options[0]);
            self::assertSame(['status' => 200, 'headers' => ['Content-Type' => ['application/octet-stream']]], Proto::decodeResponse($context));
            $chunk = substr($frame->payload, $frame->options[0]);
            self::assertSame(256 * 1024, strlen($chunk), "frame $i");
            $body .= $chunk;
        }
        self::assertSame(Frame::STREAM | Frame::PING, $frames[5]->byte10);
        self::assertSame(self::BIG_SIZE, strlen($body));
        self::assertSame(md5_file($this->dir . '/big'), md5($body));

        $peak = $this->exchange('/peak');
        $bytes = (int) substr($peak[0]->payload, $peak[0]->options[0]);
        self::assertGreaterThan(0, $bytes);
        self::assertLessThan(4 * 1024 * 1024, $bytes, 'the worker held the 5 MiB body in memory');

        $this->finish();
    }

    public function testEarlyHintsThenTheFinalResponse(): void
    {
        $frames = $this->exchange('/hints');

        self::assertCount(2, $frames);
        self::assertSame(Frame::STREAM, $frames[0]->byte10);
        self::assertSame(
            Proto::encodeResponse(103, ['Link' => ['</app.js>; rel=preload; as=script']]),
            $frames[0]->payload,
        );
        self::assertSame(0, $frames[1]->byte10);
        self::assertSame(Proto::encodeResponse(200, ['Content-Type' => ['text/plain']]) . 'after hints', $frames[1]->payload);

        $hello = $this->exchange('/');
        self::assertStringEndsWith('Hello, World!', $hello[0]->payload);

        $this->finish();
    }

    /**
     * Sends a GET for $path and reads frames until the final one, answering
     * every PING with a PONG as the server does.
     *
     * @return list<Frame>
     */
    private function exchange(string $path): array
    {
        fwrite($this->pipes[0], Psr7Support::protoRequest(['uri' => 'http://localhost' . $path]));

        $frames = [];
        do {
            $frame = Frame::fromBytes(TestSupport::readRawFrame($this->pipes[1]));
            self::assertFalse($frame->hasFlag(Frame::ERROR), $frame->payload);
            $frames[] = $frame;
            if ($frame->hasByte10(Frame::PING)) {
                fwrite($this->pipes[0], TestSupport::vector('pong'));
            }
        } while ($frame->hasByte10(Frame::STREAM));

        return $frames;
    }

    /**
     * Stops the worker and checks that it exits cleanly with nothing else on stdout.
     */
    private function finish(): void
    {
        fwrite($this->pipes[0], TestSupport::vector('stop'));
        $rest = stream_get_contents($this->pipes[1]);
        $stderr = stream_get_contents($this->pipes[2]);
        foreach ($this->pipes as $pipe) {
            fclose($pipe);
        }
        $status = proc_close($this->process);
        $this->process = null;

        self::assertSame('', $rest);
        self::assertSame(0, $status, $stderr);
    }
}
