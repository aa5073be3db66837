<?php

declare(strict_types=1);

namespace Courser\Tests;

use Courser\Frame;

/**
 * Helpers shared by the tests: the test vectors, socket pairs and raw
 * frame reading.
 */
final class TestSupport
{
    /**
     * Returns the directory of the shared test vectors: $COURSER_VECTORS, or
     * tests/vectors at the repository root.
     */
    public static function vectorsDir(): string
    {
        $dir = getenv('COURSER_VECTORS');

        return $dir !== false && $dir !== '' ? $dir : __DIR__ . '/../../tests/vectors';
    }

    /**
     * Returns the bytes of the vector file NAME.hex.
     */
    public static function vector(string $name): string
    {
        $path = self::vectorsDir() . '/' . $name . '.hex';
        $hex = @file_get_contents($path);
        if ($hex === false) {
            throw new \RuntimeException(sprintf('Test vector %s not found; set COURSER_VECTORS.', $path));
        }

        return (string) hex2bin(trim($hex));
    }

    /**
     * Returns two connected, blocking unix stream sockets.
     *
     * @return array{0: resource, 1: resource}
     */
    public static function socketPair(): array
    {
        $pair = stream_socket_pair(STREAM_PF_UNIX, STREAM_SOCK_STREAM, STREAM_IPPROTO_IP);
        if ($pair === false) {
            throw new \RuntimeException('stream_socket_pair() failed.');
        }

        return $pair;
    }

    /**
     * Reads one frame from a stream and returns its raw bytes, unparsed
     * beyond the header, so that tests can compare bytes exactly.
     *
     * @param resource $stream
     */
    public static function readRawFrame($stream): string
    {
        $header = self::readExactly($stream, Frame::HEADER_SIZE);
        [$optionBytes, $payloadLength] = Frame::parseHeader($header);

        return $header . self::readExactly($stream, $optionBytes + $payloadLength);
    }

    /**
     * Reads every frame that is already waiting on a stream.
     *
     * @param resource $stream
     *
     * @return list<string> the raw frames
     */
    public static function drainRawFrames($stream): array
    {
        $frames = [];
        while (self::readable($stream)) {
            $frames[] = self::readRawFrame($stream);
        }

        return $frames;
    }

    /**
     * Tells whether a stream has data to read within $seconds.
     *
     * @param resource $stream
     */
    public static function readable($stream, float $seconds = 0.0): bool
    {
        $read = [$stream];
        $write = $except = [];

        return stream_select($read, $write, $except, (int) $seconds, (int) (fmod($seconds, 1.0) * 1e6)) > 0;
    }

    /**
     * @param resource $stream
     */
    private static function readExactly($stream, int $length): string
    {
        $data = '';
        while (strlen($data) < $length) {
            if (!self::readable($stream, 5.0)) {
                throw new \RuntimeException(sprintf('Timed out after %d of %d bytes.', strlen($data), $length));
            }
            $chunk = fread($stream, $length - strlen($data));
            if ($chunk === '' || $chunk === false) {
                throw new \RuntimeException(sprintf('EOF after %d of %d bytes.', strlen($data), $length));
            }
            $data .= $chunk;
        }

        return $data;
    }
}
