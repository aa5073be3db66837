<?php

declare(strict_types=1);

namespace Courser\Http\Legacy;

/**
 * A read-only stream of the current request's body, for rewritten code that
 * opens php://input (which is always empty in the CLI):
 * file_get_contents('php://input') becomes
 * file_get_contents(Functions::inputUrl()), that is "courser-input://input".
 * Each open starts at the beginning of the body; the stream can be read
 * any number of times and is seekable, as php://input is since PHP 5.6.
 *
 * A form body that the server parsed (urlencoded or multipart) does not
 * reach the worker as bytes, only as the parsed tree ($_POST): the stream
 * is then empty, as php://input is for multipart bodies under PHP-FPM.
 *
 * @internal
 */
final class InputStream
{
    /** @var resource|null set by PHP for stream wrappers */
    public $context;

    private string $body = '';

    private int $position = 0;

    public static function register(): void
    {
        if (!in_array(Functions::INPUT_SCHEME, stream_get_wrappers(), true)) {
            stream_wrapper_register(Functions::INPUT_SCHEME, self::class);
        }
    }

    public function stream_open(string $path, string $mode, int $options, ?string &$openedPath): bool
    {
        if (strpbrk($mode, 'wax+') !== false) {
            if (($options & STREAM_REPORT_ERRORS) !== 0) {
                trigger_error('The request body (php://input) is read-only', E_USER_WARNING);
            }

            return false;
        }
        $this->body = self::body();
        $this->position = 0;

        return true;
    }

    public function stream_read(int $count): string
    {
        $chunk = (string) substr($this->body, $this->position, $count);
        $this->position += strlen($chunk);

        return $chunk;
    }

    public function stream_eof(): bool
    {
        return $this->position >= strlen($this->body);
    }

    public function stream_tell(): int
    {
        return $this->position;
    }

    public function stream_seek(int $offset, int $whence = SEEK_SET): bool
    {
        $target = match ($whence) {
            SEEK_SET => $offset,
            SEEK_CUR => $this->position + $offset,
            SEEK_END => strlen($this->body) + $offset,
            default => -1,
        };
        if ($target < 0) {
            return false;
        }
        $this->position = $target;

        return true;
    }

    /**
     * @return array<string, int>
     */
    public function stream_stat(): array
    {
        return ['size' => strlen($this->body), 'mode' => 0100444];
    }

    /**
     * @return array<string, int>
     */
    public function url_stat(string $path, int $flags): array
    {
        return ['size' => strlen(self::body()), 'mode' => 0100444];
    }

    /**
     * The raw body of the current request ('' for a parsed form).
     */
    public static function body(): string
    {
        $request = Context::current()->request;

        return $request === null || $request->isParsed() ? '' : $request->body;
    }

    public function stream_close(): void
    {
        $this->body = '';
    }
}
