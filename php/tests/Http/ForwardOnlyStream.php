<?php

declare(strict_types=1);

namespace Courser\Tests\Http;

use Psr\Http\Message\StreamInterface;

/**
 * A stream that can only be read forward, of unknown size, handing out the
 * given pieces one read at a time.
 */
final class ForwardOnlyStream implements StreamInterface
{
    /**
     * @param list<string> $pieces
     */
    public function __construct(private array $pieces)
    {
    }

    public function __toString(): string
    {
        return $this->getContents();
    }

    public function close(): void
    {
        $this->pieces = [];
    }

    public function detach()
    {
        $this->pieces = [];

        return null;
    }

    public function getSize(): ?int
    {
        return null;
    }

    public function tell(): int
    {
        throw new \RuntimeException('Not seekable.');
    }

    public function eof(): bool
    {
        return $this->pieces === [];
    }

    public function isSeekable(): bool
    {
        return false;
    }

    public function seek($offset, $whence = SEEK_SET): void
    {
        throw new \RuntimeException('Not seekable.');
    }

    public function rewind(): void
    {
        throw new \RuntimeException('Not seekable.');
    }

    public function isWritable(): bool
    {
        return false;
    }

    public function write($string): int
    {
        throw new \RuntimeException('Not writable.');
    }

    public function isReadable(): bool
    {
        return true;
    }

    public function read($length): string
    {
        if ($this->pieces === []) {
            return '';
        }
        $piece = array_shift($this->pieces);
        if (strlen($piece) > $length) {
            array_unshift($this->pieces, substr($piece, $length));
            $piece = substr($piece, 0, $length);
        }

        return $piece;
    }

    public function getContents(): string
    {
        $contents = implode('', $this->pieces);
        $this->pieces = [];

        return $contents;
    }

    public function getMetadata($key = null)
    {
        return $key === null ? [] : null;
    }
}
