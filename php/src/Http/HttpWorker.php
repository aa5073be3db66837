<?php

declare(strict_types=1);

namespace Courser\Http;

use Courser\Exception\ProtocolException;
use Courser\Frame;
use Courser\Payload;
use Courser\Relay\SocketRelay;
use Courser\Worker;

/**
 * HTTP requests and responses over a Worker, without any framework.
 *
 * <code>
 * $http = new HttpWorker(Worker::create());
 * while ($request = $http->waitRequest()) {
 *     try {
 *         $http->respond(200, 'Hello, World!', ['Content-Type' => ['text/plain']]);
 *     } catch (\Throwable $e) {
 *         $http->error((string) $e);
 *     }
 * }
 * </code>
 *
 * The codec (protobuf or JSON contexts) is chosen once per process, from the
 * first request: a context that is valid JSON means JSON (RoadRunner up to
 * 2023.3), anything else protobuf (RoadRunner 2024.1 and later, and Courser).
 * Every response then uses that codec and its frame flag (0x08 or 0x80).
 *
 * exit(), die() and fatal errors: from waitRequest() until the response is
 * over (respond() with a final status, error() or stop()), a request is in
 * flight. If the process ends in that time, because the handler called
 * exit() or die() or a fatal error (memory exhausted, an uncaught exception)
 * stopped PHP, a shutdown function answers the request before the process
 * exits: a 500 response with the body "Internal Server Error" (an error frame
 * when a streamed response had begun, so that the server cuts the stream
 * short), and one line on STDERR, which the server logs:
 *
 * <code>
 * courser: exit() or die() was called while handling GET /checkout; the response is 500 and this worker will be replaced
 * courser: a fatal error: Allowed memory size of 134217728 bytes exhausted (tried to allocate 20480 bytes) in /app/src/Report.php:88, while handling GET /report; the response is 500 and this worker will be replaced
 * </code>
 *
 * Output that the handler had buffered (its own ob_start()) is not sent to
 * the client: its last 2 KiB go to STDERR, so that a die("message") can be
 * read in the log. The server then sees the process exit and starts another
 * worker in its place. See onShutdown() to send something else.
 */
final class HttpWorker
{
    /** The codec of this process: Frame::CODEC_JSON or Frame::CODEC_PROTO; null until the first request. */
    private static ?int $codec = null;

    /** Error types after which PHP stops: the process is ending because of them, not of exit(). */
    public const FATAL_ERRORS = E_ERROR | E_PARSE | E_CORE_ERROR | E_COMPILE_ERROR | E_USER_ERROR | E_RECOVERABLE_ERROR;

    /** The most output of an abandoned request that goes to STDERR. */
    private const LEFTOVER_OUTPUT_LIMIT = 2048;

    /** @var \WeakReference<self>|null the worker with a request in flight (weak: a dropped worker is forgotten) */
    private static ?\WeakReference $inFlight = null;

    private static bool $shutdownRegistered = false;

    /** @var array{0: string, 1: int}|null where exit() was called, when the code said so (see noteExit()) */
    private static ?array $exitLocation = null;

    /** "GET /path" of the request in flight; null when no request is in flight. */
    private ?string $current = null;

    /** Whether frames of the final response may have gone out: a stream has begun. */
    private bool $streaming = false;

    /** @var (\Closure(array{type: int, message: string, file: string, line: int}|null): mixed)|null */
    private ?\Closure $shutdownHandler = null;

    /** @var (\Closure(string): string)|null */
    private ?\Closure $mapPaths = null;

    /** "exit() ... while handling GET /x" while the process is going down with a request in flight. */
    private ?string $abandoned = null;

    public function __construct(private readonly Worker $worker)
    {
    }

    /**
     * Creates an HTTP worker on the relay named by RR_RELAY; see Worker::create().
     */
    public static function create(bool $redirectOutput = true): self
    {
        return new self(Worker::create($redirectOutput));
    }

    public function getWorker(): Worker
    {
        return $this->worker;
    }

    /**
     * Returns the codec chosen for this process (Frame::CODEC_JSON or
     * Frame::CODEC_PROTO), or null before the first request.
     */
    public static function codec(): ?int
    {
        return self::$codec;
    }

    /**
     * Forgets the codec, so that the next request chooses it again. Only
     * tests need this: a real worker process keeps one codec for its life.
     *
     * @internal
     */
    public static function resetCodec(): void
    {
        self::$codec = null;
    }

    /**
     * Blocks until the next request arrives and returns it.
     *
     * @return Request|null null when the server asks the worker to stop; the process should then exit
     *
     * @throws ProtocolException when the request context cannot be decoded
     */
    public function waitRequest(): ?Request
    {
        $payload = $this->worker->waitPayload();
        if ($payload === null) {
            return null;
        }

        $this->begin('a request');
        self::$codec ??= self::isJsonObject($payload->context) ? Frame::CODEC_JSON : Frame::CODEC_PROTO;

        $request = self::$codec === Frame::CODEC_JSON
            ? self::requestFromJson($payload->context, $payload->body)
            : self::requestFromProto($payload->context, $payload->body);
        $this->current = self::describe($request);

        return $request;
    }

    /**
     * Waits for one request and hands it to $handle, the loop step every
     * bridge shares. A request whose context cannot be decoded is answered
     * with error() ("$who: <why>", the server sends 500) and the worker
     * stays; $handle must answer the request itself.
     *
     * @param callable(Request): void $handle
     *
     * @return bool false when the server asked the worker to stop
     */
    public function serveOne(callable $handle, string $who = 'Courser'): bool
    {
        try {
            $request = $this->waitRequest();
        } catch (ProtocolException $e) {
            $this->error($who . ': ' . $e->getMessage());

            return true;
        }
        if ($request === null) {
            return false;
        }
        $handle($request);

        return true;
    }

    /**
     * Tells whether a request is in flight: received, and its response not
     * over yet.
     */
    public function inFlight(): bool
    {
        return $this->current !== null;
    }

    /**
     * Replaces what the worker sends when the process ends while a request
     * is in flight (exit(), die(), a fatal error; see the class comment).
     *
     * The handler is called from a shutdown function, after the
     * application's own shutdown functions, with the fatal error
     * (error_get_last()) or null for exit(). It should answer the request
     * with respond() (the log line then says "the response it produced
     * (302) was sent") or error(). When it returns without answering, or
     * throws, the worker sends the 500 as usual. Output buffers are the
     * handler's to deal with. Pass null to restore the default.
     *
     * @param (\Closure(array{type: int, message: string, file: string, line: int}|null): mixed)|null $handler
     * @param (\Closure(string): string)|null $mapPaths rewrites file paths in the log line (for code
     *                                                 that runs from rewritten copies)
     */
    public function onShutdown(?\Closure $handler, ?\Closure $mapPaths = null): void
    {
        $this->shutdownHandler = $handler;
        $this->mapPaths = $mapPaths;
    }

    /**
     * Records where exit() is about to be called, for the log line. Code
     * rewritten by ScriptWorker calls this; anything else may too.
     *
     * @internal
     */
    public static function noteExit(string $file, int $line): void
    {
        self::$exitLocation = [$file, $line];
    }

    /**
     * Sends the response to the current request.
     *
     * A string body goes out in one frame. Any other iterable (a Generator,
     * an array) is streamed: one frame per chunk, each repeating the status
     * and headers, then a final frame with the Generator's return value as
     * its body; see Worker::respondStream(), which also explains PING/PONG
     * and how a StreamStoppedException reaches the generator when the
     * client goes away.
     *
     * With $endOfStream false the frames have the STREAM bit and the
     * response is not over: this is how a 1xx interim response such as 103
     * Early Hints is sent, before the final response:
     *
     *     $http->respond(103, '', ['Link' => ['</style.css>; rel=preload; as=style']], false);
     *     $http->respond(200, 'after hints', ['Content-Type' => ['text/plain']]);
     *
     * @param array<array-key, mixed> $headers header name => list of values (a single string is one value);
     *                                         values that are neither strings nor numbers are left out,
     *                                         and so are headers with an empty name or no value left
     * @param string|iterable<mixed, string> $body
     *
     * @return bool true, or false when the server stopped a streamed response (the client went away)
     *
     * @throws \InvalidArgumentException when a 1xx status comes with a body, or a header cannot be encoded
     */
    public function respond(int $status, string|iterable $body = '', array $headers = [], bool $endOfStream = true): bool
    {
        if ($status >= 100 && $status < 200 && $body !== '') {
            throw new \InvalidArgumentException(sprintf('A %d (informational) response cannot have a body.', $status));
        }

        $codec = self::$codec ?? Frame::CODEC_PROTO;
        $context = self::encodeContext($codec, $status, $headers);

        $final = $endOfStream && $status >= 200;
        if ($status >= 200) {
            // Frames of the final response go out from here on (a 1xx leaves nothing half-sent).
            $this->streaming = $this->streaming || !is_string($body) || !$endOfStream;
        }

        if ($final && $this->abandoned !== null) {
            $this->announce(sprintf('the response it produced (%d) was sent', $status));
        }

        if (is_string($body)) {
            if ($endOfStream) {
                $this->worker->respond(new Payload($body, $context), $codec);
            } else {
                $this->worker->respondPartial(new Payload($body, $context), $codec);
            }
            if ($final) {
                $this->end();
            }

            return true;
        }

        $complete = $endOfStream
            ? $this->worker->respondStream($body, $context, $codec)
            : $this->worker->respondStreamPartial($body, $context, $codec);
        if ($final || !$complete) {
            // A stopped stream is over too: the worker has sent the closing frame.
            $this->end();
        }

        return $complete;
    }

    /**
     * Reports that the current request failed. The server answers the client
     * with its internal_error_code (500), and the worker stays available.
     */
    public function error(string $message): void
    {
        $this->announce('an error was reported to the server');
        $this->worker->error($message);
        $this->end();
    }

    /**
     * Asks the server to stop this worker in place of a response; the server
     * runs the request on another worker. Exit afterwards.
     */
    public function stop(): void
    {
        $this->worker->stop();
        $this->end();
    }

    /**
     * Marks a request as in flight and makes sure the shutdown function is there.
     */
    private function begin(string $description): void
    {
        if (!self::$shutdownRegistered) {
            self::$shutdownRegistered = true;
            register_shutdown_function(static function (): void {
                // Run after the shutdown functions the application registers later
                // (they may log, flush a client, render an error page).
                register_shutdown_function(self::shutdown(...));
            });
        }
        $this->current = $description;
        $this->streaming = false;
        self::$inFlight = \WeakReference::create($this);
        self::$exitLocation = null;
        error_clear_last();
    }

    /**
     * Marks the response as over.
     */
    private function end(): void
    {
        $this->current = null;
        $this->streaming = false;
        if (self::$inFlight?->get() === $this) {
            self::$inFlight = null;
        }
    }

    /**
     * "GET /path": the method and path of a request, for log lines (the
     * query is left out, as it may hold secrets).
     */
    private static function describe(Request $request): string
    {
        $path = parse_url($request->uri, PHP_URL_PATH);

        return ($request->method !== '' ? $request->method : 'GET') . ' ' . (is_string($path) && $path !== '' ? $path : '/');
    }

    /**
     * The shutdown function: answers the request in flight, if any.
     */
    private static function shutdown(): void
    {
        $http = self::$inFlight?->get();
        if ($http === null || $http->current === null) {
            return;
        }

        $error = error_get_last();
        $fatal = $error !== null && ($error['type'] & self::FATAL_ERRORS) !== 0 ? $error : null;
        if ($fatal !== null && str_contains($fatal['message'], 'Allowed memory size')) {
            // Leave room to answer: the limit was just hit.
            @ini_set('memory_limit', '-1');
        }
        $http->abandon($fatal);
    }

    /**
     * Ends the request in flight as the process goes down, and logs why.
     *
     * The log line goes out just before the frame that ends the response:
     * once the server has that frame it may hand the worker's slot to
     * another request, find the input closed, and kill the process.
     *
     * @param array{type: int, message: string, file: string, line: int}|null $fatal
     */
    private function abandon(?array $fatal): void
    {
        $where = (string) $this->current;
        if ($fatal !== null) {
            $what = 'a fatal error: ' . self::describeError($fatal) . ',';
        } else {
            $what = 'exit() or die() was called'
                . (self::$exitLocation !== null ? sprintf(' at %s:%d', self::$exitLocation[0], self::$exitLocation[1]) : '');
        }
        $this->abandoned = sprintf('%s while handling %s', $what, $where);

        // From now on the server cannot hand this worker another request: a pipe
        // without a reader (or a unix socket shut down for reading) fails the
        // write, and the server runs that request on another worker instead of
        // waiting for this one to exit.
        self::closeInput();

        if ($this->shutdownHandler !== null) {
            try {
                ($this->shutdownHandler)($fatal);
            } catch (\Throwable $e) {
                self::log('courser: the shutdown handler failed: ' . strtok($e->getMessage(), "\n"));
            }
        }

        if ($this->current !== null) {
            $leftover = self::discardOutput();
            if ($leftover !== '') {
                self::log($leftover);
            }
            try {
                if ($this->streaming) {
                    $this->announce('the streamed response was cut short');
                    $this->error(sprintf('%s while streaming the response to %s', $fatal !== null ? 'a fatal error' : 'exit()', $where));
                } else {
                    $this->announce('the response is 500');
                    $this->respond(500, "Internal Server Error\n", ['Content-Type' => ['text/plain; charset=utf-8']]);
                }
            } catch (\Throwable) {
                // The relay is gone (the server went away): nobody to answer.
            }
        }
        $this->announce('no response was sent');
    }

    /**
     * Writes the line about the abandoned request, once.
     */
    private function announce(string $outcome): void
    {
        if ($this->abandoned === null) {
            return;
        }
        $line = sprintf('courser: %s; %s and this worker will be replaced', $this->abandoned, $outcome);
        $this->abandoned = null;
        self::log($this->mapPaths !== null ? ($this->mapPaths)($line) : $line);
    }

    /**
     * "message in file:line" for an error_get_last() array, on one line (an
     * uncaught exception's message already ends with its location, and its
     * stack trace is left out).
     *
     * @param array{type: int, message: string, file: string, line: int} $error
     */
    public static function describeError(array $error): string
    {
        $message = (string) strtok($error['message'], "\n");
        $location = sprintf('%s:%d', $error['file'], $error['line']);

        return str_ends_with($message, ' in ' . $location) ? $message : $message . ' in ' . $location;
    }

    /**
     * Empties every output buffer, so that nothing reaches STDOUT (the relay
     * in pipes mode), and puts back one that sends output to STDERR for what
     * the rest of the shutdown prints.
     *
     * @return string the tail of what the buffers held
     */
    private static function discardOutput(): string
    {
        $held = [];
        while (ob_get_level() > 0) {
            $contents = ob_get_contents();
            if (!@ob_end_clean()) {
                break;
            }
            if (is_string($contents) && $contents !== '') {
                array_unshift($held, $contents);
            }
        }
        $stderr = defined('STDERR') ? STDERR : fopen('php://stderr', 'wb');
        ob_start(static function (string $buffer) use ($stderr): string {
            if ($buffer !== '') {
                fwrite($stderr, $buffer);
            }

            return '';
        }, 1);

        $output = implode('', $held);
        if (strlen($output) > self::LEFTOVER_OUTPUT_LIMIT) {
            $output = sprintf('[... %d bytes] ', strlen($output) - self::LEFTOVER_OUTPUT_LIMIT) . substr($output, -self::LEFTOVER_OUTPUT_LIMIT);
        }

        return rtrim($output);
    }

    /**
     * Closes the relay's input: STDIN in pipes mode; with a unix:// relay,
     * the socket's reading side (shutdown(SHUT_RD)), so that the server's
     * next write fails with EPIPE. Nothing on tcp://: a write to a TCP
     * socket whose peer shut down reading still succeeds.
     */
    private static function closeInput(): void
    {
        $relay = getenv('RR_RELAY');
        if ($relay === false || $relay === '' || str_starts_with($relay, 'pipes')) {
            if (defined('STDIN') && is_resource(STDIN)) {
                @fclose(STDIN);
            }
        } elseif (str_starts_with($relay, 'unix://')) {
            SocketRelay::shutdownInputs($relay);
        }
    }

    private static function log(string $line): void
    {
        $stderr = defined('STDERR') ? STDERR : fopen('php://stderr', 'wb');
        fwrite($stderr, $line . "\n");
    }

    /**
     * Encodes a response context (status and headers) in a codec.
     *
     * @param int                     $codec   Frame::CODEC_PROTO or Frame::CODEC_JSON
     * @param array<array-key, mixed> $headers as for respond()
     *
     * @throws \InvalidArgumentException when a header cannot be encoded as JSON (not UTF-8)
     */
    public static function encodeContext(int $codec, int $status, array $headers): string
    {
        $headers = self::normalizeHeaders($headers);

        if ($codec !== Frame::CODEC_JSON) {
            return Proto::encodeResponse($status, $headers);
        }

        try {
            // An object, so that {} is written for no headers and numeric names stay keys.
            return json_encode(['status' => $status, 'headers' => (object) $headers], JSON_THROW_ON_ERROR);
        } catch (\JsonException $e) {
            throw new \InvalidArgumentException('The response headers cannot be encoded as JSON (are they UTF-8?): ' . $e->getMessage(), 0, $e);
        }
    }

    /**
     * Builds a Request from a JSON context (RoadRunner up to 2023.3).
     *
     * @throws ProtocolException
     */
    public static function requestFromJson(string $context, string $body): Request
    {
        try {
            $fields = json_decode($context, true, 512, JSON_THROW_ON_ERROR);
        } catch (\JsonException $e) {
            throw new ProtocolException('The request context is not valid JSON (the process chose the JSON codec at its first request): ' . $e->getMessage(), 0, $e);
        }
        if (!is_array($fields)) {
            throw new ProtocolException('The JSON request context must be an object.');
        }

        $cookies = [];
        foreach ((array) ($fields['cookies'] ?? []) as $name => $value) {
            if (is_scalar($value)) {
                $cookies[(string) $name] = (string) $value;
            } elseif (is_array($value)) {
                $cookies[(string) $name] = implode(',', array_map('strval', array_filter($value, 'is_scalar')));
            }
        }

        return self::buildRequest(
            $fields,
            self::filterHeaders((array) ($fields['headers'] ?? [])),
            $cookies,
            (array) ($fields['uploads'] ?? []),
            (array) ($fields['attributes'] ?? []),
            $body,
        );
    }

    /**
     * Builds a Request from a protobuf context (http.v1.Request).
     *
     * @throws ProtocolException
     */
    public static function requestFromProto(string $context, string $body): Request
    {
        $fields = Proto::decodeRequest($context);

        $uploads = [];
        if ($fields['uploads'] !== '') {
            try {
                $uploads = json_decode($fields['uploads'], true, 512, JSON_THROW_ON_ERROR);
            } catch (\JsonException $e) {
                throw new ProtocolException('The uploads field of the request is not valid JSON: ' . $e->getMessage(), 0, $e);
            }
        }

        return self::buildRequest(
            $fields,
            self::filterHeaders($fields['headers']),
            array_map(static fn (array $values): string => implode(',', $values), $fields['cookies']),
            is_array($uploads) ? $uploads : [],
            // Attributes carry one value each: keep the first.
            array_map(static fn (array $values): string => $values[0] ?? '', $fields['attributes']),
            $body,
        );
    }

    /**
     * @param array<string, mixed>        $fields     the decoded context
     * @param array<string, list<string>> $headers
     * @param array<string, string>       $cookies
     * @param array<array-key, mixed>     $uploads
     * @param array<array-key, mixed>     $attributes
     *
     * @throws ProtocolException when a parsed body is not valid JSON
     */
    private static function buildRequest(array $fields, array $headers, array $cookies, array $uploads, array $attributes, string $body): Request
    {
        $rawQuery = self::stringField($fields, 'rawQuery');
        parse_str($rawQuery, $query);

        $parsed = null;
        if (!empty($fields['parsed'])) {
            try {
                $parsed = $body === '' ? [] : json_decode($body, true, 512, JSON_THROW_ON_ERROR);
            } catch (\JsonException $e) {
                throw new ProtocolException('The server marked the body as parsed, but it is not valid JSON: ' . $e->getMessage(), 0, $e);
            }
            $parsed = is_array($parsed) ? $parsed : [];
        }

        return new Request(
            remoteAddr: self::stringField($fields, 'remoteAddr'),
            protocol: self::stringField($fields, 'protocol'),
            method: self::stringField($fields, 'method'),
            uri: self::stringField($fields, 'uri'),
            headers: $headers,
            cookies: $cookies,
            query: $query,
            body: $body,
            parsed: $parsed,
            uploads: $uploads,
            attributes: [Request::PARSED_BODY_ATTRIBUTE => $parsed !== null] + $attributes,
            rawQuery: $rawQuery,
        );
    }

    /**
     * Keeps the headers with a non-empty string name, as lists of strings.
     *
     * @param array<array-key, mixed> $headers
     *
     * @return array<string, list<string>>
     */
    private static function filterHeaders(array $headers): array
    {
        $result = [];
        foreach ($headers as $name => $values) {
            if (!is_string($name) || $name === '') {
                continue;
            }
            $list = [];
            foreach (is_array($values) ? $values : [$values] as $value) {
                if (is_scalar($value)) {
                    $list[] = (string) $value;
                }
            }
            $result[$name] = $list;
        }

        return $result;
    }

    /**
     * Turns response headers into name => list of strings, in the order given.
     *
     * @param array<array-key, mixed> $headers
     *
     * @return array<string, list<string>>
     */
    private static function normalizeHeaders(array $headers): array
    {
        $result = [];
        foreach ($headers as $name => $values) {
            $name = (string) $name;
            if ($name === '') {
                continue;
            }
            $list = [];
            foreach (is_array($values) ? $values : [$values] as $value) {
                if (is_string($value)) {
                    $list[] = $value;
                } elseif (is_int($value) || is_float($value) || $value instanceof \Stringable) {
                    $list[] = (string) $value;
                }
            }
            if ($list !== []) {
                $result[$name] = $list;
            }
        }

        return $result;
    }

    /**
     * @param array<array-key, mixed> $fields
     */
    private static function stringField(array $fields, string $name): string
    {
        $value = $fields[$name] ?? '';

        return is_scalar($value) ? (string) $value : '';
    }

    /**
     * Tells whether a context is a JSON object (PHP 8.2 has no json_validate()).
     * A protobuf Request never starts with "{" (that byte would be a group
     * start for field 15), so the first byte settles most cases at once.
     */
    private static function isJsonObject(string $context): bool
    {
        $trimmed = ltrim($context, " \t\n\r");
        if ($trimmed === '' || $trimmed[0] !== '{') {
            return false;
        }
        json_decode($trimmed);

        return json_last_error() === JSON_ERROR_NONE;
    }
}
