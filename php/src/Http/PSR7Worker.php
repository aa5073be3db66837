<?php

declare(strict_types=1);

namespace Courser\Http;

use Courser\Exception\ProtocolException;
use Courser\Exception\StreamStoppedException;
use Courser\Worker;
use Psr\Http\Message\ResponseInterface;
use Psr\Http\Message\ServerRequestFactoryInterface;
use Psr\Http\Message\ServerRequestInterface;
use Psr\Http\Message\StreamFactoryInterface;
use Psr\Http\Message\StreamInterface;
use Psr\Http\Message\UploadedFileFactoryInterface;
use Psr\Http\Message\UploadedFileInterface;

/**
 * PSR-7 requests and responses over a Worker, with any PSR-17 factories.
 *
 * <code>
 * $factory = new \Nyholm\Psr7\Factory\Psr17Factory();
 * $psr7 = new PSR7Worker(Worker::create(), $factory, $factory, $factory);
 * while ($request = $psr7->waitRequest()) {
 *     try {
 *         $psr7->respond($factory->createResponse(200)->withBody($factory->createStream('Hello')));
 *     } catch (\Throwable $e) {
 *         $psr7->error((string) $e);
 *     }
 * }
 * </code>
 */
final class PSR7Worker
{
    /** Bodies up to this size go out in one frame by default (1 MiB). */
    public const DEFAULT_SINGLE_FRAME_LIMIT = 1024 * 1024;

    /** Larger bodies are streamed in chunks of this size by default (256 KiB). */
    public const DEFAULT_CHUNK_SIZE = 256 * 1024;

    /** Protocol versions that PSR-7 requests get; anything else becomes 1.1. */
    private const VERSIONS = ['1.0', '1.1', '2'];

    private readonly HttpWorker $httpWorker;

    /** @var array<array-key, mixed> the process's $_SERVER when the worker was made */
    private readonly array $originalServer;

    /**
     * @param int $singleFrameLimit bodies of at most this many bytes are sent in one frame;
     *                              larger ones, and those whose size is unknown and turns out
     *                              larger, are streamed
     * @param int $chunkSize        the size of each streamed chunk
     */
    public function __construct(
        Worker $worker,
        private readonly ServerRequestFactoryInterface $requestFactory,
        private readonly StreamFactoryInterface $streamFactory,
        private readonly UploadedFileFactoryInterface $uploadsFactory,
        private readonly int $singleFrameLimit = self::DEFAULT_SINGLE_FRAME_LIMIT,
        private readonly int $chunkSize = self::DEFAULT_CHUNK_SIZE,
    ) {
        if ($singleFrameLimit < 0 || $chunkSize < 1) {
            throw new \InvalidArgumentException('The single-frame limit must be 0 or more, and the chunk size 1 or more.');
        }
        $this->httpWorker = new HttpWorker($worker);
        $this->originalServer = $_SERVER;
    }

    public function getWorker(): Worker
    {
        return $this->httpWorker->getWorker();
    }

    public function getHttpWorker(): HttpWorker
    {
        return $this->httpWorker;
    }

    /**
     * Blocks until the next request arrives and returns it as a PSR-7
     * server request. $_SERVER is also replaced by the request's server
     * parameters (see Globals::server()).
     *
     * @return ServerRequestInterface|null null when the server asks the worker to stop
     *
     * @throws ProtocolException when the request cannot be decoded
     */
    public function waitRequest(): ?ServerRequestInterface
    {
        $request = $this->httpWorker->waitRequest();
        if ($request === null) {
            return null;
        }

        $_SERVER = Globals::server($request, $this->originalServer);

        return $this->toPsr7($request, $_SERVER);
    }

    /**
     * Builds the PSR-7 server request for a Request.
     *
     * @param array<array-key, mixed> $serverParams
     */
    public function toPsr7(Request $request, array $serverParams): ServerRequestInterface
    {
        $psr = $this->requestFactory->createServerRequest($request->method, $request->uri, $serverParams)
            ->withProtocolVersion(self::protocolVersion($request->protocol))
            ->withCookieParams($request->cookies)
            ->withQueryParams($request->query)
            ->withUploadedFiles($this->wrapUploads($request->uploads));

        foreach ($request->attributes as $name => $value) {
            $psr = $psr->withAttribute((string) $name, $value);
        }
        foreach ($request->headers as $name => $values) {
            $psr = $psr->withHeader($name, $values);
        }
        if ($request->parsed !== null) {
            $psr = $psr->withParsedBody($request->parsed);
        }
        if ($request->body !== '') {
            $psr = $psr->withBody($this->streamFactory->createStream($request->body));
        }

        return $psr;
    }

    /**
     * Sends a PSR-7 response.
     *
     * A body of known size up to the single-frame limit goes out in one
     * frame. A larger one is streamed in chunks of the chunk size (the last
     * chunk rides in the final frame), so memory stays flat whatever the
     * size. A body of unknown size is read up to the limit first: if it ends
     * there it goes in one frame, otherwise it is streamed.
     *
     * A 1xx status (103 Early Hints) is sent as an interim response: a frame
     * with the STREAM bit, status and headers, and no body (the body of the
     * PSR-7 response is not sent). The final response must follow.
     *
     * @return bool true, or false when the server stopped a streamed response (the client went away)
     */
    public function respond(ResponseInterface $response): bool
    {
        $status = $response->getStatusCode();
        $headers = $response->getHeaders();

        if ($status >= 100 && $status < 200) {
            return $this->httpWorker->respond($status, '', $headers, false);
        }

        $body = $response->getBody();
        if ($body->isSeekable()) {
            $body->rewind();
        }
        $size = $body->getSize();
        $chunks = $this->readChunks($body);

        if ($size !== null && $size <= $this->singleFrameLimit) {
            return $this->httpWorker->respond($status, implode('', iterator_to_array($chunks, false)), $headers);
        }

        // Read ahead up to the limit unless the size already says the body is larger.
        $buffered = [];
        $bufferedBytes = 0;
        if ($size === null) {
            while ($chunks->valid() && $bufferedBytes <= $this->singleFrameLimit) {
                $buffered[] = $chunks->current();
                $bufferedBytes += strlen(end($buffered));
                $chunks->next();
            }
            if (!$chunks->valid() && $bufferedBytes <= $this->singleFrameLimit) {
                return $this->httpWorker->respond($status, implode('', $buffered), $headers);
            }
        }

        return $this->httpWorker->respond($status, self::lastInFinalFrame($buffered, $chunks), $headers);
    }

    /**
     * Streams a response whose body a generator produces: each yielded
     * string is sent at once as one chunk, and the generator's return value
     * is the body of the final frame. The generator should catch
     * StreamStoppedException, which is thrown into it when the client goes
     * away.
     *
     * @param array<array-key, mixed>    $headers header name => list of values
     * @param \Generator<mixed, string, mixed, mixed> $body
     *
     * @return bool true, or false when the server stopped the stream
     */
    public function respondGenerator(int $status, array $headers, \Generator $body): bool
    {
        return $this->httpWorker->respond($status, $body, $headers);
    }

    /**
     * Reports that the current request failed; see HttpWorker::error().
     */
    public function error(string $message): void
    {
        $this->httpWorker->error($message);
    }

    /**
     * Asks the server to stop this worker; see HttpWorker::stop().
     */
    public function stop(): void
    {
        $this->httpWorker->stop();
    }

    /**
     * Wraps the leaves of an upload tree in UploadedFileInterface objects,
     * keeping the nesting. A file with error 0 is opened from its tmpName;
     * one whose temporary file is gone gets UPLOAD_ERR_NO_TMP_DIR. Any other
     * error code is kept, with an empty stream.
     *
     * @param array<array-key, mixed> $uploads
     *
     * @return array<array-key, mixed>
     */
    public function wrapUploads(array $uploads): array
    {
        $result = [];
        foreach ($uploads as $key => $node) {
            if (Globals::isUploadLeaf($node)) {
                $result[$key] = $this->wrapUpload($node);
            } elseif (is_array($node)) {
                $result[$key] = $this->wrapUploads($node);
            }
        }

        return $result;
    }

    /**
     * @param array<string, mixed> $file a leaf: name, mime, size, error, tmpName
     */
    private function wrapUpload(array $file): UploadedFileInterface
    {
        $error = (int) $file['error'];
        $tmpName = (string) ($file['tmpName'] ?? '');

        $stream = null;
        if ($error === UPLOAD_ERR_OK) {
            if ($tmpName !== '' && is_file($tmpName) && is_readable($tmpName)) {
                $stream = $this->streamFactory->createStreamFromFile($tmpName, 'rb');
            } else {
                $error = UPLOAD_ERR_NO_TMP_DIR;
            }
        }

        return $this->uploadsFactory->createUploadedFile(
            $stream ?? $this->streamFactory->createStream(''),
            isset($file['size']) ? (int) $file['size'] : null,
            $error,
            isset($file['name']) ? (string) $file['name'] : null,
            isset($file['mime']) ? (string) $file['mime'] : null,
        );
    }

    /**
     * Reads a stream in chunks of exactly the chunk size (the last one may
     * be shorter; an empty body yields nothing).
     *
     * @return \Generator<int, string>
     */
    private function readChunks(StreamInterface $body): \Generator
    {
        $chunk = '';
        while (!$body->eof()) {
            $data = $body->read($this->chunkSize - strlen($chunk));
            if ($data === '') {
                // Nothing more, even if eof() has not noticed yet.
                break;
            }
            $chunk .= $data;
            if (strlen($chunk) >= $this->chunkSize) {
                yield $chunk;
                $chunk = '';
            }
        }
        if ($chunk !== '') {
            yield $chunk;
        }
    }

    /**
     * Yields the chunks already read and then the rest, holding back the
     * last one as the return value so it rides in the final frame.
     *
     * @param list<string>             $buffered
     * @param \Generator<int, string> $rest
     *
     * @return \Generator<int, string, mixed, string>
     */
    private static function lastInFinalFrame(array $buffered, \Generator $rest): \Generator
    {
        $previous = null;
        try {
            foreach ($buffered as $chunk) {
                if ($previous !== null) {
                    yield $previous;
                }
                $previous = $chunk;
            }
            for (; $rest->valid(); $rest->next()) {
                if ($previous !== null) {
                    yield $previous;
                }
                $previous = $rest->current();
            }
        } catch (StreamStoppedException) {
            return '';
        }

        return $previous ?? '';
    }

    /**
     * Turns "HTTP/2.0" into "2", "HTTP/1.0" into "1.0"; anything unknown is "1.1".
     */
    private static function protocolVersion(string $protocol): string
    {
        $version = str_starts_with($protocol, 'HTTP/') ? substr($protocol, 5) : $protocol;
        if ($version === '2.0') {
            return '2';
        }

        return in_array($version, self::VERSIONS, true) ? $version : '1.1';
    }
}
