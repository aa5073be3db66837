<?php

declare(strict_types=1);

namespace Courser;

use Courser\Exception\ProtocolException;
use Courser\Exception\StreamStoppedException;
use Courser\Relay\Relay;
use Courser\Relay\RelayInterface;

/**
 * The worker side of the Courser / RoadRunner worker protocol.
 *
 * <code>
 * $worker = Worker::create();
 * while ($job = $worker->waitPayload()) {
 *     try {
 *         $worker->respond(new Payload('Hello', $job->context), Frame::CODEC_JSON);
 *     } catch (\Throwable $e) {
 *         $worker->error((string) $e);
 *     }
 * }
 * </code>
 *
 * One job is handled at a time: after waitPayload() has returned a payload,
 * the worker must answer it with exactly one of respond(), respondStream(),
 * error() or stop() before it waits again.
 */
final class Worker
{
    /** A streaming worker asks for a PONG once this many frames have gone out since the last one. */
    public const FRAMES_PER_PING = 5;

    public function __construct(private readonly RelayInterface $relay)
    {
    }

    /**
     * Creates a worker on the relay named by the RR_RELAY environment
     * variable ("pipes" when it is not set).
     *
     * Unless $redirectOutput is false, it also makes sure that nothing PHP
     * prints reaches the real stdout, which is the relay in pipes mode: an
     * output buffer sends everything that is echoed or printed to STDERR, and
     * display_errors is set to "stderr".
     */
    public static function create(bool $redirectOutput = true): self
    {
        if ($redirectOutput) {
            self::redirectOutputToStderr();
        }

        $address = getenv('RR_RELAY');

        return new self(Relay::create($address === false || $address === '' ? Relay::DEFAULT_ADDRESS : $address));
    }

    /**
     * Blocks until the server sends a job, and returns it.
     *
     * A PID request (control frame {"pid":N}) is answered with this
     * process's PID, here and at any other time, and the wait goes on. PONG
     * and STOP frames left over from a finished stream are skipped.
     *
     * @return Payload|null the job; null when the server asks the worker to
     *                      stop (control frame {"stop":true}, or a data frame with an
     *                      empty context and body), after which the process should exit
     *
     * @throws ProtocolException on a control frame that is neither pid nor stop, or a malformed data frame
     */
    public function waitPayload(): ?Payload
    {
        while (true) {
            $frame = $this->relay->waitFrame();

            if ($frame->hasFlag(Frame::CONTROL)) {
                if ($this->handleControl($frame)) {
                    continue;
                }

                return null;
            }
            if (($frame->byte10 & (Frame::PONG | Frame::STOP)) !== 0) {
                // The answer to a PING, or a STOP, that arrived after the stream had ended.
                continue;
            }

            if ($frame->options === []) {
                throw new ProtocolException('A job frame must carry the context length as its first option; it has no options.');
            }
            $contextLength = $frame->options[0];
            if ($contextLength > strlen($frame->payload)) {
                throw new ProtocolException(sprintf(
                    'The context length %d exceeds the %d-byte payload.',
                    $contextLength,
                    strlen($frame->payload),
                ));
            }
            if ($contextLength === 0 && $frame->payload === '') {
                return null;
            }

            return new Payload(
                (string) substr($frame->payload, $contextLength),
                (string) substr($frame->payload, 0, $contextLength),
                $frame->flags,
            );
        }
    }

    /**
     * Sends the complete response to the current job.
     *
     * @param int $codec the flags of the response frame: Frame::CODEC_PROTO or
     *                   Frame::CODEC_JSON for HTTP, 0 for a plain answer
     */
    public function respond(Payload $payload, int $codec = 0): void
    {
        $this->relay->send(new Frame(
            $codec,
            [strlen($payload->context)],
            $payload->context . $payload->body,
        ));
    }

    /**
     * Streams the response to the current job in several frames.
     *
     * Every value that $chunks yields is sent at once as one frame with the
     * STREAM bit, each carrying $context followed by the chunk. When $chunks
     * is a Generator, its return value is the body of the final frame (the
     * one without STREAM); for any other iterable the final body is empty.
     *
     * Once FRAMES_PER_PING frames have gone out since the stream began or since the
     * last PONG, the next chunk frame also carries PING (byte10 0x05), and
     * before each later chunk the input is polled without blocking. A PONG
     * restarts the count. A STOP from the server ends the stream: a
     * StreamStoppedException is thrown into the generator (which should catch
     * it), and a closing frame with no context, no body, flags 0 and byte10 0
     * is sent. A generator that lets the exception escape is simply closed.
     *
     * If $chunks itself throws, nothing more is sent and the exception
     * propagates. The server is then still waiting for the end of the
     * response, so the caller must end it with error().
     *
     * @param iterable<mixed, string> $chunks  the body chunks
     * @param string                  $context the context repeated in every frame
     * @param int                     $codec   the flags of every frame, as for respond()
     *
     * @return bool true when the stream ran to its end, false when the server stopped it
     */
    public function respondStream(iterable $chunks, string $context = '', int $codec = 0): bool
    {
        return $this->stream($chunks, $context, $codec, true);
    }

    /**
     * Sends one frame of a response that goes on: like respond(), but with
     * the STREAM bit set, so the server waits for more frames. An HTTP 1xx
     * interim response (103 Early Hints) is sent this way, before the final
     * response.
     *
     * @param int $codec the flags of the frame, as for respond()
     */
    public function respondPartial(Payload $payload, int $codec = 0): void
    {
        $this->relay->send(new Frame(
            $codec,
            [strlen($payload->context)],
            $payload->context . $payload->body,
            Frame::STREAM,
        ));
    }

    /**
     * Streams part of a response: as respondStream(), but every frame,
     * including the one that carries a Generator's return value, has the
     * STREAM bit, so the response is not over yet. An empty return value
     * (or an iterable that is not a Generator) sends no extra frame. The
     * response must be ended later with respond(), respondStream() or
     * error().
     *
     * @param iterable<mixed, string> $chunks  the body chunks
     * @param string                  $context the context repeated in every frame
     * @param int                     $codec   the flags of every frame, as for respond()
     *
     * @return bool true when all chunks went out, false when the server stopped the
     *              stream (the stream is then closed and the response is over)
     */
    public function respondStreamPartial(iterable $chunks, string $context = '', int $codec = 0): bool
    {
        return $this->stream($chunks, $context, $codec, false);
    }

    /**
     * Sends the chunks of a stream; see respondStream().
     *
     * @param iterable<mixed, string> $chunks
     * @param bool                    $final  whether the frame after the chunks ends the response
     */
    private function stream(iterable $chunks, string $context, int $codec, bool $final): bool
    {
        $framesSincePong = 0;
        $waitingForPong = false;

        foreach ($chunks as $chunk) {
            if ($waitingForPong) {
                $event = $this->pollStream();
                if ($event === Frame::STOP) {
                    $this->stopStream($chunks);

                    return false;
                }
                if ($event === Frame::PONG) {
                    $waitingForPong = false;
                    $framesSincePong = 0;
                }
            }

            $byte10 = Frame::STREAM;
            if (!$waitingForPong && $framesSincePong >= self::FRAMES_PER_PING) {
                $byte10 |= Frame::PING;
                $waitingForPong = true;
            }

            $this->relay->send(new Frame($codec, [strlen($context)], $context . $chunk, $byte10));
            ++$framesSincePong;
        }

        $last = $chunks instanceof \Generator ? (string) $chunks->getReturn() : '';
        if ($final) {
            $this->respond(new Payload($last, $context), $codec);
        } elseif ($last !== '') {
            $this->respondPartial(new Payload($last, $context), $codec);
        }

        return true;
    }

    /**
     * Reports that the current job failed: flags ERROR, no options, the
     * message as the payload. The worker stays available for the next job.
     */
    public function error(string $message): void
    {
        $this->relay->send(new Frame(Frame::ERROR, [], $message));
    }

    /**
     * Asks the server to stop this worker, in place of a response. The server
     * hands the current job to another worker. The process should exit
     * afterwards.
     */
    public function stop(): void
    {
        $this->respond(new Payload('', self::encodeJson(['stop' => true])));
    }

    /**
     * Handles a control frame.
     *
     * @return bool true to go on waiting (a PID request), false to stop
     */
    private function handleControl(Frame $frame): bool
    {
        try {
            $command = json_decode($frame->payload, true, 512, JSON_THROW_ON_ERROR);
        } catch (\JsonException $e) {
            throw new ProtocolException(sprintf('A control frame must hold JSON, got "%s": %s', $frame->payload, $e->getMessage()));
        }

        if (is_array($command) && !empty($command['pid'])) {
            $this->relay->send(new Frame(Frame::CONTROL, [], self::encodeJson(['pid' => getmypid()])));

            return true;
        }
        if (is_array($command) && !empty($command['stop'])) {
            return false;
        }

        throw new ProtocolException(sprintf('Unknown control frame "%s"; expected {"pid":N} or {"stop":true}.', $frame->payload));
    }

    /**
     * Reads, without blocking, what the server has sent during a stream.
     *
     * @return int Frame::STOP when the server cancelled the stream, Frame::PONG when it
     *             answered the PING, 0 when nothing relevant arrived
     */
    private function pollStream(): int
    {
        $event = 0;

        while ($event !== Frame::STOP && $this->relay->hasFrame()) {
            $frame = $this->relay->waitFrame();

            if ($frame->hasFlag(Frame::CONTROL)) {
                if (!$this->handleControl($frame)) {
                    throw new ProtocolException('The server sent a stop command in the middle of a streamed response.');
                }
            } elseif ($frame->hasByte10(Frame::STOP)) {
                $event = Frame::STOP;
            } elseif ($frame->hasByte10(Frame::PONG)) {
                $event = Frame::PONG;
            } else {
                throw new ProtocolException('The server sent a job in the middle of a streamed response.');
            }
        }

        return $event;
    }

    /**
     * Ends a stream that the server cancelled: tells the generator, then
     * sends the closing frame that the server waits for.
     *
     * @param iterable<mixed, string> $chunks
     */
    private function stopStream(iterable $chunks): void
    {
        try {
            if ($chunks instanceof \Generator) {
                $chunks->throw(new StreamStoppedException('The server stopped the stream.'));
            }
        } catch (StreamStoppedException) {
            // The generator did not catch it; it is closed now, which is all that matters.
        } finally {
            $this->relay->send(new Frame(0, [0], ''));
        }
    }

    /**
     * Installs the output buffer that keeps the stdout relay clean.
     */
    private static function redirectOutputToStderr(): void
    {
        ini_set('display_errors', 'stderr');

        $stderr = defined('STDERR') ? STDERR : fopen('php://stderr', 'wb');
        ob_start(static function (string $buffer) use ($stderr): string {
            if ($buffer !== '') {
                fwrite($stderr, $buffer);
            }

            return '';
        }, 1);
    }

    /**
     * @param array<string, mixed> $data
     */
    private static function encodeJson(array $data): string
    {
        return json_encode($data, JSON_THROW_ON_ERROR);
    }
}
