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
 *
 * Slow-request traces: when the pool has a slowlog_timeout, the server starts
 * its workers with COURSER_SLOWLOG=1, and create() installs a SIGPROF handler
 * that writes the PHP stack to STDERR when a job runs too long; see
 * installSlowlogHandler().
 */
final class Worker
{
    /** A streaming worker asks for a PONG once this many frames have gone out since the last one. */
    public const FRAMES_PER_PING = 5;

    /**
     * The environment variable by which the server asks its workers to answer
     * SIGPROF with a stack trace (set to "1" when the pool has a slowlog_timeout).
     */
    public const SLOWLOG_ENV = 'COURSER_SLOWLOG';

    /** Most stack frames that one slow-request trace shows (php-fpm's default depth is 20). */
    public const SLOWLOG_MAX_FRAMES = 50;

    /** si_code of a signal sent with kill() (SI_USER); a kernel timer sends SI_KERNEL (0x80). */
    private const SI_USER = 0;

    /** The installed SIGPROF handler, so that it can be recognised. */
    private static ?\Closure $slowlogHandler = null;

    /** @var resource|null where the traces go (STDERR) */
    private static $slowlogOutput = null;

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
     *
     * When the server asks for slow-request traces (COURSER_SLOWLOG=1 in the
     * environment), it also installs the SIGPROF handler that writes them;
     * see installSlowlogHandler().
     */
    public static function create(bool $redirectOutput = true): self
    {
        if ($redirectOutput) {
            self::redirectOutputToStderr();
        }
        if (self::slowlogRequested()) {
            self::installSlowlogHandler();
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
     * Installs the handler that answers the server's request for the stack of
     * a slow job, like php-fpm's slowlog. create() calls this when the server
     * asks for it (COURSER_SLOWLOG=1); a worker built without create() may
     * call it itself.
     *
     * When a job has run for the pool's slowlog_timeout, the server sends the
     * worker SIGPROF, once per job. The handler writes the current stack to
     * STDERR as one block, which the server logs with the request:
     *
     * <code>
     * courser-slowlog-begin 4242
     * [0x0000] {signal}() /app/src/Repository.php:88
     * [0x0001] App\Repository->find() /app/src/Controller.php:31
     * [0x0002] App\Controller->show() /app/worker.php:25
     * courser-slowlog-end 4242
     * </code>
     *
     * One line per frame, innermost first, as in php-fpm's slowlog: the
     * function and the line that called it; frame numbers stand in for
     * php-fpm's frame addresses, and at most SLOWLOG_MAX_FRAMES frames are
     * shown. The first line, "{signal}", is where PHP ran the handler: at its
     * next check for signals (a call, a loop jump), so an internal function
     * that was running (usleep(), curl_exec(), PDOStatement::execute()...) has
     * returned by then and cannot be named; the line is that call's or the one
     * where the code goes on after it. When the signal is handled after the
     * job has ended, that is once the next job has arrived, the handler writes
     * "courser-slowlog-idle PID" instead of a stack.
     *
     * Why SIGPROF: php-fpm reads the stack with ptrace, which a worker cannot
     * do to itself, so the server has to ask with a signal. SIGUSR1 and SIGUSR2
     * are often taken by applications and libraries, and SIGHUP, SIGINT, SIGQUIT
     * and SIGTERM mean "stop" or "reload". The only other user of SIGPROF in
     * PHP is the max_execution_time timer (ITIMER_PROF, non-ZTS builds), which
     * is off (0) on the command line. A PHP process without this handler dies
     * of SIGPROF ("Maximum execution time of 0 seconds exceeded"), so the
     * server signals only workers that announced it (the line
     * "courser-slowlog-ready PID" on STDERR).
     *
     * Side effects, while the handler is installed:
     * - pcntl_async_signals(true) is switched on for the whole process, so
     *   the application's own pcntl handlers run asynchronously as well.
     * - The signal ends a wait early: sleep() returns the seconds left,
     *   usleep() and time_nanosleep() return at once, and stream_select() and
     *   stream_socket_accept() fail with "Interrupted system call". PHP cannot
     *   avoid this (the kernel never restarts these calls after a handler),
     *   so a job that must sleep its full time loops until its deadline; it
     *   happens at most once per slow job. Blocking reads and writes on
     *   pipes, files and sockets through PHP streams (fread(), fwrite(),
     *   mysqlnd) go on undisturbed: they are restarted (SA_RESTART) or
     *   retried, and the handler runs when they return.
     * - PHP's own SIGPROF handler (max_execution_time) is replaced. Nothing is
     *   installed when max_execution_time is set at startup; when a limit set
     *   later with set_time_limit() runs out, the handler ends the worker with
     *   PHP's "Maximum execution time exceeded" fatal error (exit status 255),
     *   as PHP would. In worker mode the pool's exec_ttl is the limit to use.
     *
     * @return bool whether the handler is installed: false without ext-pcntl,
     *              when max_execution_time is set, or when the application has
     *              its own SIGPROF handler
     */
    public static function installSlowlogHandler(): bool
    {
        if (!function_exists('pcntl_signal') || !function_exists('pcntl_async_signals') || !defined('SIGPROF')) {
            return false;
        }
        if ((int) ini_get('max_execution_time') !== 0) {
            return false;
        }
        $current = pcntl_signal_get_handler(\SIGPROF);
        if ($current instanceof \Closure && $current === self::$slowlogHandler) {
            return true;
        }
        if (is_callable($current)) {
            return false;
        }

        self::$slowlogOutput ??= defined('STDERR') ? STDERR : fopen('php://stderr', 'wb');
        $handler = self::onSlowlogSignal(...);
        if (!pcntl_signal(\SIGPROF, $handler)) {
            return false;
        }
        pcntl_async_signals(true);
        self::$slowlogHandler = $handler;
        fwrite(self::$slowlogOutput, 'courser-slowlog-ready ' . getmypid() . "\n");

        return true;
    }

    /**
     * Formats a stack as the block that the slowlog handler writes.
     *
     * @internal
     *
     * @param list<array<string, mixed>> $trace a debug_backtrace() taken in the signal handler:
     *                                          its first frame is the handler, called where
     *                                          PHP handled the signal
     */
    public static function formatSlowlog(int $pid, array $trace): string
    {
        $lines = ['courser-slowlog-begin ' . $pid];
        $count = count($trace);
        $shown = min($count, self::SLOWLOG_MAX_FRAMES);
        for ($i = 0; $i < $shown; ++$i) {
            $frame = $trace[$i];
            $function = $i === 0
                ? '{signal}'
                : ($frame['class'] ?? '') . ($frame['type'] ?? '') . ($frame['function'] ?? '???');
            // A function called by an internal one (a callback) has no line of its own:
            // as php-fpm does, show the nearest line of PHP code below it.
            $location = 'unknown:0';
            for ($j = $i; $j < $count; ++$j) {
                if (isset($trace[$j]['file'])) {
                    $location = $trace[$j]['file'] . ':' . ($trace[$j]['line'] ?? 0);
                    break;
                }
            }
            $lines[] = sprintf('[0x%04x] %s() %s', $i, $function, $location);
        }
        if ($count > $shown) {
            $lines[] = sprintf('... %d more frames', $count - $shown);
        }
        $lines[] = 'courser-slowlog-end ' . $pid;

        return implode("\n", $lines) . "\n";
    }

    /**
     * Whether the server asked for slow-request traces (COURSER_SLOWLOG).
     */
    private static function slowlogRequested(): bool
    {
        $value = getenv(self::SLOWLOG_ENV);

        return $value !== false && $value !== '' && $value !== '0';
    }

    /**
     * The SIGPROF handler: writes the stack in one write, so that nothing
     * else the worker writes to STDERR can come between its lines.
     */
    private static function onSlowlogSignal(int $signal, mixed $info = null): void
    {
        $trace = debug_backtrace(DEBUG_BACKTRACE_IGNORE_ARGS);
        $code = is_array($info) ? (int) ($info['code'] ?? self::SI_USER) : self::SI_USER;
        if ($code > self::SI_USER) {
            // Sent by the kernel: the max_execution_time timer (set_time_limit()), whose
            // handler this one replaced. End the worker as PHP would.
            $limit = (int) ini_get('max_execution_time');
            fwrite(self::$slowlogOutput ?? STDERR, sprintf(
                "PHP Fatal error:  Maximum execution time of %d second%s exceeded in %s on line %d\n",
                $limit,
                $limit === 1 ? '' : 's',
                $trace[0]['file'] ?? 'Unknown',
                $trace[0]['line'] ?? 0,
            ));
            exit(255);
        }

        $pid = (int) getmypid();
        foreach ($trace as $frame) {
            if (($frame['class'] ?? '') === self::class && $frame['function'] === 'waitPayload') {
                // The job ended before the signal was handled: this is the next job starting.
                fwrite(self::$slowlogOutput ?? STDERR, 'courser-slowlog-idle ' . $pid . "\n");

                return;
            }
        }
        fwrite(self::$slowlogOutput ?? STDERR, self::formatSlowlog($pid, $trace));
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
