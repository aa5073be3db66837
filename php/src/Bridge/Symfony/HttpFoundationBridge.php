<?php

declare(strict_types=1);

namespace Courser\Bridge\Symfony;

use Courser\Http\Globals;
use Courser\Http\HttpWorker;
use Courser\Http\Request;
use Symfony\Component\HttpFoundation\BinaryFileResponse;
use Symfony\Component\HttpFoundation\File\UploadedFile;
use Symfony\Component\HttpFoundation\Request as SymfonyRequest;
use Symfony\Component\HttpFoundation\Response;
use Symfony\Component\HttpFoundation\StreamedResponse;

/**
 * Converts between Courser's requests and HttpFoundation's requests and
 * responses; shared by the Symfony and the Laravel bridges.
 *
 * Responses: a plain Response is one string. A BinaryFileResponse is read
 * from its file in chunks (honouring Range offsets set by prepare() and
 * deleteFileAfterSend()). send() streams a StreamedResponse as its callback
 * writes (a frame per $chunkSize bytes and per ob_flush()); fromResponse()
 * captures it whole and returns it as chunks.
 */
final class HttpFoundationBridge
{
    public function __construct(private readonly int $chunkSize = 65536)
    {
        if ($chunkSize < 1) {
            throw new \InvalidArgumentException('The chunk size must be 1 or more.');
        }
    }

    /**
     * Converts a Courser request to a Symfony request (or a subclass such as
     * Illuminate\Http\Request, which has the same constructor).
     *
     * With $populateGlobals, the six superglobals are filled with the same
     * request, for code that reads $_GET, $_POST, $_COOKIE, $_FILES,
     * $_SERVER or $_REQUEST.
     *
     * @param array<array-key, mixed>     $baseServer the process's own $_SERVER, merged under the request's
     * @param class-string<SymfonyRequest> $class
     */
    public function toRequest(Request $request, array $baseServer = [], string $class = SymfonyRequest::class, bool $populateGlobals = false): SymfonyRequest
    {
        $server = Globals::server($request, $baseServer);
        if ($populateGlobals) {
            Globals::populate($request, null, $server);
        }

        return new $class(
            $request->query,
            $request->parsed ?? [],
            $request->attributes,
            $request->cookies,
            self::files($request->uploads),
            $server,
            $request->isParsed() ? '' : $request->body,
        );
    }

    /**
     * Sends a response. A StreamedResponse is streamed as its callback
     * produces output: every $chunkSize bytes, and at every ob_flush(), one
     * frame goes out (the usual `ob_flush(); flush();` of streaming code;
     * PHP's flush() alone does not reach output buffers), so the client sees the output while the callback
     * still runs (server-sent events, long exports). If the callback throws
     * after output went out, the exception propagates and the caller ends
     * the response with HttpWorker::error(), which cuts the stream short.
     * A client that leaves is noticed by the server, which drops the rest
     * of the stream; the callback still runs to its end.
     */
    public function send(Response $response, HttpWorker $http): void
    {
        if (!$response instanceof StreamedResponse) {
            [$status, $headers, $body] = $this->fromResponse($response);
            $http->respond($status, $body, $headers);

            return;
        }

        $status = $response->getStatusCode();
        $headers = $this->headersOf($response);
        $level = ob_get_level();
        ob_start(static function (string $buffer) use ($http, $status, $headers): string {
            if ($buffer !== '') {
                $http->respond($status, $buffer, $headers, false);
            }

            return '';
        }, $this->chunkSize);
        try {
            $response->sendContent();
        } finally {
            while (ob_get_level() > $level) {
                ob_end_flush();
            }
        }
        $http->respond($status, '', $headers);
    }

    /**
     * Converts a response to the status, the headers and the body (a string or a generator of chunks).
     *
     * @return array{0: int, 1: array<string, list<string>>, 2: string|\Generator<int, string, mixed, string>}
     */
    public function fromResponse(Response $response): array
    {
        $headers = $this->headersOf($response);

        if ($response instanceof BinaryFileResponse) {
            $body = $this->fileChunks($response);
        } elseif ($response instanceof StreamedResponse) {
            $body = $this->streamedChunks($response);
        } else {
            $body = (string) $response->getContent();
        }

        return [$response->getStatusCode(), $headers, $body];
    }

    /**
     * The response's headers as name => values, its cookies as Set-Cookie lines.
     *
     * @return array<string, list<string>>
     */
    private function headersOf(Response $response): array
    {
        $headers = [];
        foreach ($response->headers->allPreserveCaseWithoutCookies() as $name => $values) {
            $headers[(string) $name] = array_values(array_map('strval', array_filter($values, static fn ($v): bool => $v !== null)));
        }
        foreach ($response->headers->getCookies() as $cookie) {
            $headers['Set-Cookie'][] = (string) $cookie;
        }

        return $headers;
    }

    /**
     * @return \Generator<int, string, mixed, string>
     */
    private function fileChunks(BinaryFileResponse $response): \Generator
    {
        // offset, maxlen, chunkSize and deleteFileAfterSend are protected: read them in the class scope.
        $state = (fn (): array => [$this->offset, $this->maxlen, $this->chunkSize, $this->deleteFileAfterSend])->call($response);
        [$offset, $maxlen, , $delete] = $state;
        $path = $response->getFile()->getPathname();

        if (!$response->isSuccessful()) {
            return (string) $response->getContent();
        }
        $handle = null;
        try {
            if ($maxlen === 0) {
                return '';
            }
            $handle = fopen($path, 'rb');
            if ($handle === false) {
                throw new \RuntimeException(sprintf('Cannot open "%s".', $path));
            }
            if ($offset !== 0) {
                fseek($handle, $offset);
            }
            $left = $maxlen;
            while ($left !== 0 && !feof($handle)) {
                $read = $left < 0 || $left > $this->chunkSize ? $this->chunkSize : $left;
                $data = fread($handle, $read);
                if ($data === false || $data === '') {
                    break;
                }
                if ($left > 0) {
                    $left -= strlen($data);
                }
                yield $data;
            }

            return '';
        } finally {
            if (is_resource($handle)) {
                fclose($handle);
            }
            if ($delete && is_file($path)) {
                @unlink($path);
            }
        }
    }

    /**
     * @return \Generator<int, string, mixed, string>
     */
    private function streamedChunks(StreamedResponse $response): \Generator
    {
        $chunks = [];
        $level = ob_get_level();
        ob_start(static function (string $buffer) use (&$chunks): string {
            if ($buffer !== '') {
                $chunks[] = $buffer;
            }

            return '';
        }, $this->chunkSize);
        try {
            $response->sendContent();
        } finally {
            while (ob_get_level() > $level) {
                ob_end_flush();
            }
        }

        // Merge the small pieces the handler may get (one per echo above the chunk size) into chunks.
        $pending = '';
        foreach ($chunks as $i => $chunk) {
            unset($chunks[$i]);
            $pending .= $chunk;
            if (strlen($pending) >= $this->chunkSize) {
                yield $pending;
                $pending = '';
            }
        }

        return $pending;
    }

    /**
     * Turns the upload tree into UploadedFile objects (test mode: the files
     * were not moved by PHP's own upload handling, so is_uploaded_file() is false).
     *
     * @param array<array-key, mixed> $uploads
     *
     * @return array<array-key, mixed>
     */
    public static function files(array $uploads): array
    {
        $files = [];
        foreach ($uploads as $key => $value) {
            if (!is_array($value)) {
                continue;
            }
            if (array_key_exists('tmpName', $value) && !is_array($value['tmpName'])) {
                $error = (int) ($value['error'] ?? UPLOAD_ERR_OK);
                $files[$key] = new UploadedFile(
                    (string) $value['tmpName'],
                    (string) ($value['name'] ?? ''),
                    isset($value['mime']) ? (string) $value['mime'] : null,
                    $error,
                    true,
                );
            } else {
                $files[$key] = self::files($value);
            }
        }

        return $files;
    }
}
