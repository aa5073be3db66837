<?php

declare(strict_types=1);

namespace Courser\Http;

use Courser\Exception\ProtocolException;
use Courser\Frame;
use Courser\Payload;
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
 */
final class HttpWorker
{
    /** The codec of this process: Frame::CODEC_JSON or Frame::CODEC_PROTO; null until the first request. */
    private static ?int $codec = null;

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

        self::$codec ??= self::isJsonObject($payload->context) ? Frame::CODEC_JSON : Frame::CODEC_PROTO;

        return self::$codec === Frame::CODEC_JSON
            ? self::requestFromJson($payload->context, $payload->body)
            : self::requestFromProto($payload->context, $payload->body);
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

        if (is_string($body)) {
            if ($endOfStream) {
                $this->worker->respond(new Payload($body, $context), $codec);
            } else {
                $this->worker->respondPartial(new Payload($body, $context), $codec);
            }

            return true;
        }

        return $endOfStream
            ? $this->worker->respondStream($body, $context, $codec)
            : $this->worker->respondStreamPartial($body, $context, $codec);
    }

    /**
     * Reports that the current request failed. The server answers the client
     * with its internal_error_code (500), and the worker stays available.
     */
    public function error(string $message): void
    {
        $this->worker->error($message);
    }

    /**
     * Asks the server to stop this worker in place of a response; the server
     * runs the request on another worker. Exit afterwards.
     */
    public function stop(): void
    {
        $this->worker->stop();
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
