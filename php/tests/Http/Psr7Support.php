<?php

declare(strict_types=1);

namespace Courser\Tests\Http;

use Courser\Frame;
use Courser\Http\Proto;
use Courser\Tests\TestSupport;
use Psr\Http\Message\ServerRequestInterface;
use Psr\Http\Message\UploadedFileInterface;

require_once __DIR__ . '/../TestSupport.php';

/**
 * Helpers for the HTTP tests: Debian's nyholm/psr7, the JSON summary that
 * the worker which captured the vectors wrote as its response body, and
 * request frames built from the vectors.
 */
final class Psr7Support
{
    /** Debian's autoloader for nyholm/psr7 (it pulls in the PSR-7 and PSR-17 interfaces). */
    public const NYHOLM_AUTOLOAD = '/usr/share/php/Nyholm/Psr7/autoload.php';

    /** The headers of every normal response in the vectors, in the order the app added them. */
    public const VECTOR_HEADERS = [
        'Content-Type' => ['application/json'],
        'Set-Cookie' => ['a=1; Path=/', 'b=2; HttpOnly'],
        'X-Multi' => ['one', 'two'],
    ];

    /** The status of every normal response in the vectors. */
    public const VECTOR_STATUS = 201;

    /**
     * Loads nyholm/psr7; false when the Debian package is not installed.
     */
    public static function loadNyholm(): bool
    {
        if (class_exists(\Nyholm\Psr7\Factory\Psr17Factory::class)) {
            return true;
        }
        if (!is_file(self::NYHOLM_AUTOLOAD)) {
            return false;
        }
        require_once self::NYHOLM_AUTOLOAD;

        return class_exists(\Nyholm\Psr7\Factory\Psr17Factory::class);
    }

    /**
     * The response body of the capturing worker: a JSON summary of what the
     * PSR-7 request held.
     */
    public static function summary(ServerRequestInterface $request): string
    {
        $headers = $request->getHeaders();
        ksort($headers);

        return json_encode([
            'method' => $request->getMethod(),
            'uri' => (string) $request->getUri(),
            'protocolVersion' => $request->getProtocolVersion(),
            'query' => $request->getQueryParams(),
            'cookies' => $request->getCookieParams(),
            'headers' => $headers,
            'attributes' => $request->getAttributes(),
            'parsedBody' => $request->getParsedBody(),
            'body' => (string) $request->getBody(),
            'uploads' => self::summarizeUploads($request->getUploadedFiles()),
            'remoteAddr' => $request->getServerParams()['REMOTE_ADDR'] ?? null,
        ], JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR);
    }

    /**
     * Returns the context and the body of a vector frame.
     *
     * @return array{0: string, 1: string, 2: Frame}
     */
    public static function split(string $vector): array
    {
        $frame = Frame::fromBytes(TestSupport::vector($vector));
        $length = $frame->options[0] ?? 0;

        return [substr($frame->payload, 0, $length), (string) substr($frame->payload, $length), $frame];
    }

    /**
     * Builds a protobuf request frame.
     *
     * @param array<string, mixed> $fields the fields of http.v1.Request (see Proto::encodeRequest())
     */
    public static function protoRequest(array $fields, string $body = ''): string
    {
        $context = Proto::encodeRequest($fields + ['remoteAddr' => '127.0.0.1', 'protocol' => 'HTTP/1.1', 'method' => 'GET']);

        return Frame::encode(Frame::CODEC_PROTO, [strlen($context)], $context . $body);
    }

    /**
     * The multipart vector request, with its temporary files recreated under
     * $dir (the captured paths belong to the capturing run).
     */
    public static function multipartRequest(string $dir): string
    {
        [$context, $body] = self::split('http_request_multipart');
        $fields = Proto::decodeRequest($context);
        file_put_contents($dir . '/upload1000001', "hello upload\n");
        file_put_contents($dir . '/upload1000002', 'doc-two');
        $fields['uploads'] = str_replace('/tmp/rr-compat/uploads', $dir, $fields['uploads']);

        $context = Proto::encodeRequest($fields);

        return Frame::encode(Frame::CODEC_PROTO, [strlen($context)], $context . $body);
    }

    /**
     * Makes an empty temporary directory.
     */
    public static function tempDir(): string
    {
        $dir = sys_get_temp_dir() . '/courser-http-' . getmypid() . '-' . bin2hex(random_bytes(4));
        mkdir($dir);

        return $dir;
    }

    public static function removeDir(string $dir): void
    {
        foreach (glob($dir . '/*') ?: [] as $file) {
            unlink($file);
        }
        @rmdir($dir);
    }

    /**
     * @param array<array-key, mixed> $files
     *
     * @return array<array-key, mixed>
     */
    private static function summarizeUploads(array $files): array
    {
        $result = [];
        foreach ($files as $key => $file) {
            $result[$key] = $file instanceof UploadedFileInterface
                ? [
                    'clientFilename' => $file->getClientFilename(),
                    'clientMediaType' => $file->getClientMediaType(),
                    'size' => $file->getSize(),
                    'error' => $file->getError(),
                    'content' => $file->getError() === UPLOAD_ERR_OK ? (string) $file->getStream() : null,
                ]
                : self::summarizeUploads($file);
        }

        return $result;
    }
}
