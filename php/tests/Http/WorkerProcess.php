<?php

declare(strict_types=1);

namespace Courser\Tests\Http;

use Courser\Frame;
use Courser\Http\Proto;
use Courser\Tests\TestSupport;

require_once __DIR__ . '/../TestSupport.php';

/**
 * A worker script run as a child process over pipes, as the server runs
 * it: the test writes request frames to its STDIN and reads the frames it
 * answers with from its STDOUT.
 */
final class WorkerProcess
{
    /** @var resource|null */
    private $process;

    /** @var array<int, resource> */
    private array $pipes = [];

    private ?int $exitCode = null;

    /**
     * @param array<string, string> $environment added to the test's own (RR_RELAY is removed)
     */
    public function __construct(string $script, array $environment = [])
    {
        $inherited = getenv();
        unset($inherited['RR_RELAY']);
        $process = proc_open(
            [PHP_BINARY, $script],
            [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']],
            $this->pipes,
            null,
            $environment + $inherited,
        );
        if (!is_resource($process)) {
            throw new \RuntimeException('Cannot start ' . $script);
        }
        $this->process = $process;
    }

    public function __destruct()
    {
        $this->close();
    }

    /**
     * Builds a protobuf request frame.
     *
     * @param array<string, list<string>> $headers
     * @param array<string, string>       $cookies
     * @param array<string, mixed>        $fields  more http.v1.Request fields (parsed, uploads, attributes)
     */
    public static function request(string $method, string $uri, array $headers = [], array $cookies = [], string $body = '', array $fields = []): string
    {
        $context = Proto::encodeRequest($fields + [
            'remoteAddr' => '127.0.0.1',
            'protocol' => 'HTTP/1.1',
            'method' => $method,
            'uri' => $uri,
            'rawQuery' => (string) parse_url($uri, PHP_URL_QUERY),
            'headers' => $headers,
            'cookies' => array_map(static fn (string $value): array => [$value], $cookies),
        ]);

        return Frame::encode(Frame::CODEC_PROTO, [strlen($context)], $context . $body);
    }

    /**
     * Writes a request frame; false when the worker no longer reads its
     * input (the pipe is closed).
     */
    public function send(string $frame): bool
    {
        $written = @fwrite($this->pipes[0], $frame);

        return $written === strlen($frame);
    }

    /**
     * Reads the frames of one response, up to and including the final one
     * (or an error frame), answering PINGs with PONGs.
     *
     * @return list<Frame>
     */
    public function readResponse(): array
    {
        $frames = [];
        do {
            $frame = Frame::fromBytes(TestSupport::readRawFrame($this->pipes[1]));
            $frames[] = $frame;
            if ($frame->hasByte10(Frame::PING)) {
                @fwrite($this->pipes[0], TestSupport::vector('pong'));
            }
        } while ($frame->hasByte10(Frame::STREAM) && !$frame->hasFlag(Frame::ERROR));

        return $frames;
    }

    /**
     * Sends a request and returns its response as [status, headers, body]
     * (for an error frame: [0, [], the message]).
     *
     * @return array{0: int, 1: array<string, list<string>>, 2: string, 3: list<Frame>}
     */
    public function exchange(string $frame): array
    {
        if (!$this->send($frame)) {
            throw new \RuntimeException('The worker does not read its input any more.');
        }

        return self::decode($this->readResponse());
    }

    /**
     * @param list<Frame> $frames
     *
     * @return array{0: int, 1: array<string, list<string>>, 2: string, 3: list<Frame>}
     */
    public static function decode(array $frames): array
    {
        $last = $frames[count($frames) - 1];
        if ($last->hasFlag(Frame::ERROR)) {
            $body = '';
            foreach (array_slice($frames, 0, -1) as $frame) {
                $body .= substr($frame->payload, $frame->options[0] ?? 0);
            }

            return [0, [], $last->payload, $frames];
        }
        $context = substr($frames[0]->payload, 0, $frames[0]->options[0] ?? 0);
        $response = Proto::decodeResponse($context);
        $body = '';
        foreach ($frames as $frame) {
            $body .= substr($frame->payload, $frame->options[0] ?? 0);
        }

        return [$response['status'], $response['headers'], $body, $frames];
    }

    /**
     * Closes the worker's input (as the server does to stop it) and waits
     * for it to exit.
     *
     * @return array{0: int, 1: string, 2: string} exit code, what is left on STDOUT, STDERR
     */
    public function finish(): array
    {
        if (is_resource($this->pipes[0] ?? null)) {
            fclose($this->pipes[0]);
        }
        $stdout = is_resource($this->pipes[1] ?? null) ? (string) stream_get_contents($this->pipes[1]) : '';
        $stderr = is_resource($this->pipes[2] ?? null) ? (string) stream_get_contents($this->pipes[2]) : '';
        $this->close();

        return [(int) $this->exitCode, $stdout, $stderr];
    }

    private function close(): void
    {
        foreach ($this->pipes as $pipe) {
            if (is_resource($pipe)) {
                fclose($pipe);
            }
        }
        $this->pipes = [];
        if (is_resource($this->process)) {
            $status = proc_get_status($this->process);
            if ($status['running']) {
                usleep(100000);
                $status = proc_get_status($this->process);
                if ($status['running']) {
                    proc_terminate($this->process);
                }
            }
            $code = proc_close($this->process);
            $this->exitCode = !$status['running'] ? $status['exitcode'] : $code;
        }
        $this->process = null;
    }
}
