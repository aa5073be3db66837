<?php

declare(strict_types=1);

namespace Courser\Tests\Http;

use Courser\Http\HttpWorker;
use Courser\Http\Legacy\Context;
use Courser\Http\Legacy\Functions;
use Courser\Http\Request;
use PHPUnit\Framework\TestCase;

/**
 * The stand-ins for header(), setcookie(), http_response_code() and the
 * output buffering functions, on a Context of their own. The expected
 * lines are what PHP 8.2's built-in web server (a SAPI that keeps
 * headers) answers to the same calls.
 */
final class LegacyFunctionsTest extends TestCase
{
    /** @var list<array{0: int, 1: string}> */
    private array $errors = [];

    protected function setUp(): void
    {
        Context::activate(new Context(new Request(
            remoteAddr: '127.0.0.1',
            protocol: 'HTTP/1.1',
            method: 'GET',
            uri: 'http://example.test:8080/page?x=1',
            headers: ['Accept' => ['text/html'], 'X-Multi' => ['a', 'b']],
            cookies: ['PHPSESSID' => 'abc'],
            query: ['x' => '1'],
            body: 'raw body',
            parsed: null,
            uploads: [],
            attributes: [],
            rawQuery: 'x=1',
        )));
        \http_response_code(200);
        set_error_handler(function (int $type, string $message): bool {
            $this->errors[] = [$type, $message];

            return true;
        });
    }

    protected function tearDown(): void
    {
        restore_error_handler();
        Context::activate(null);
    }

    public function testHeaderReplacesOrAddsAndHeadersListShowsThem(): void
    {
        Functions::header('X-One: 1');
        Functions::header('x-one: 2');
        Functions::header('X-Dup: a');
        Functions::header('X-Dup: b', false);
        Functions::header('X-Trail:   v  ');
        Functions::header("X-Crlf: end\r\n");
        Functions::header('nocolon');
        Functions::header('Content-Type: text/html');
        Functions::header('X-Gone: 1');
        Functions::header_remove('X-GONE');

        self::assertSame([
            'x-one: 2',
            'X-Dup: a',
            'X-Dup: b',
            'X-Trail:   v',
            'X-Crlf: end',
            'nocolon',
            'Content-type: text/html;charset=UTF-8',
        ], Functions::headers_list());
        self::assertSame([
            'x-one' => ['2'],
            'X-Dup' => ['a', 'b'],
            'X-Trail' => ['v'],
            'X-Crlf' => ['end'],
            'Content-type' => ['text/html;charset=UTF-8'],
        ], Context::current()->send(), 'a line without a colon is never sent');
        self::assertSame([], $this->errors);
    }

    public function testHeaderSetsTheStatusAsPhpDoes(): void
    {
        Functions::header('HTTP/1.1 404 Not Found');
        self::assertSame(404, \http_response_code());
        Functions::header('Location: /elsewhere');
        self::assertSame(302, \http_response_code(), 'Location turns anything but 201 and 3xx into 302');
        Functions::header('Location: /moved', true, 301);
        self::assertSame(301, \http_response_code());
        Functions::header('Location: /again');
        self::assertSame(301, \http_response_code(), 'a 3xx stays');
        Functions::header('WWW-Authenticate: Basic realm="x"');
        self::assertSame(401, \http_response_code());
        Functions::header('X-Teapot: yes', true, 418);
        self::assertSame(418, \http_response_code());
        self::assertSame(['Location: /again', 'WWW-Authenticate: Basic realm="x"', 'X-Teapot: yes'], Functions::headers_list());
    }

    public function testHeadersWithLineBreaksOrNulAreRefused(): void
    {
        Functions::header("X-A: 1\r\nX-B: 2");
        Functions::header("X-C: 1\0");
        Functions::header_remove('X-A: 1');

        self::assertSame([], Functions::headers_list());
        self::assertSame([
            [E_USER_WARNING, 'Header may not contain more than a single header, new line detected'],
            [E_USER_WARNING, 'Header may not contain NUL bytes'],
            [E_USER_WARNING, 'Header to delete may not contain colon.'],
        ], $this->errors);
    }

    public function testTheDefaultContentTypeIsAddedWhenTheScriptSetNone(): void
    {
        Functions::header('X-A: 1');
        self::assertSame(['X-A' => ['1'], 'Content-Type' => ['text/html; charset=UTF-8']], Context::current()->send());

        Context::activate(new Context());
        Functions::header('Content-Type: application/json');
        self::assertSame(['Content-Type' => ['application/json']], Context::current()->send());

        Context::activate(new Context());
        Functions::header('Content-Type: text/plain');
        Functions::header_remove('Content-Type');
        self::assertSame([], Context::current()->send(), 'a removed Content-Type is not replaced by the default');
    }

    public function testAfterTheHeadersAreSentTheyCannotChange(): void
    {
        Context::current()->send();

        self::assertTrue(Functions::headers_sent($file, $line));
        self::assertSame(['', 0], [$file, $line]);
        Functions::header('X-Late: 1');
        self::assertFalse(Functions::setcookie('late', 'x'));
        self::assertSame([], array_filter(Functions::headers_list(), static fn (string $l): bool => str_contains($l, 'late') || str_contains($l, 'Late')));
        self::assertCount(2, $this->errors);
        self::assertSame('Cannot modify header information - headers already sent', $this->errors[0][1]);
    }

    public function testSetcookieFormatsTheLineAsPhp8Does(): void
    {
        $in = time() + 3600;
        self::assertTrue(Functions::setcookie('a', 'x y+z/é', $in, '/p', 'ex.com', true, true));
        Functions::setcookie('d', '');
        Functions::setcookie('n', null);
        Functions::setcookie('o', 'v', ['expires' => 1, 'samesite' => 'Lax', 'Path' => '/']);
        Functions::setrawcookie('r', 'a%20b');
        Functions::setcookie(name: 'named', value: 'v', httponly: true);

        self::assertSame([
            'Set-Cookie: a=x%20y%2Bz%2F%C3%A9; expires=' . gmdate('D, d M Y H:i:s', $in) . ' GMT; Max-Age=3600; path=/p; domain=ex.com; secure; HttpOnly',
            'Set-Cookie: d=deleted; expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0',
            'Set-Cookie: n=deleted; expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0',
            'Set-Cookie: o=v; expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; path=/; SameSite=Lax',
            'Set-Cookie: r=a%20b',
            'Set-Cookie: named=v; HttpOnly',
        ], Functions::headers_list());
        self::assertSame(6, count(Context::current()->send()['Set-Cookie']), 'every cookie is its own Set-Cookie line');
    }

    /**
     * @return iterable<string, array{0: \Closure(): mixed, 1: class-string<\Throwable>, 2: string}>
     */
    public static function badCookies(): iterable
    {
        yield 'empty name' => [static fn () => Functions::setcookie(''), \ValueError::class, 'setcookie(): Argument #1 ($name) cannot be empty'];
        yield 'name with =' => [static fn () => Functions::setcookie('a=b', 'v'), \ValueError::class, 'setcookie(): Argument #1 ($name) cannot contain "=", ",", ";", " ", "\t", "\r", "\n", "\013", or "\014"'];
        yield 'raw value with ;' => [static fn () => Functions::setrawcookie('a', 'x;y'), \ValueError::class, 'setrawcookie(): Argument #2 ($value) cannot contain ",", ";", " ", "\t", "\r", "\n", "\013", or "\014"'];
        yield 'path with ;' => [static fn () => Functions::setcookie('a', 'v', 0, '/;x'), \ValueError::class, 'setcookie(): "path" option cannot contain ",", ";", " ", "\t", "\r", "\n", "\013", or "\014"'];
        yield 'unknown option' => [static fn () => Functions::setcookie('a', 'v', ['nope' => 1]), \ValueError::class, 'setcookie(): option "nope" is invalid'];
        yield 'options and more' => [static fn () => Functions::setcookie('a', 'v', [], '/'), \ArgumentCountError::class, 'setcookie(): Expects exactly 3 arguments when argument #3 ($expires_or_options) is an array'];
        yield 'year 10000' => [static fn () => Functions::setcookie('a', 'v', 253402300800), \ValueError::class, 'setcookie(): "expires" option cannot have a year greater than 9999'];
    }

    /**
     * @dataProvider badCookies
     *
     * @param \Closure(): mixed           $call
     * @param class-string<\Throwable>   $class
     */
    public function testBadCookiesThrowAsPhpDoes(\Closure $call, string $class, string $message): void
    {
        $this->expectException($class);
        $this->expectExceptionMessage($message);

        $call();
    }

    public function testHttpResponseCodeReturnsThePreviousCode(): void
    {
        self::assertSame(200, Functions::http_response_code());
        self::assertSame(200, Functions::http_response_code(404));
        self::assertSame(404, Functions::http_response_code());
        self::assertSame(404, \http_response_code(), 'PHP\'s own value, so that code that was not rewritten sees it');
    }

    public function testGetallheadersHasTheHostAndJoinsRepeatedHeaders(): void
    {
        self::assertSame(['Host' => 'example.test:8080', 'Accept' => 'text/html', 'X-Multi' => 'a, b'], Functions::getallheaders());
    }

    public function testTheInputUrlReadsTheRequestBody(): void
    {
        $url = Functions::inputUrl();

        self::assertSame('raw body', file_get_contents($url));
        self::assertSame('raw body', file_get_contents($url), 'as often as wanted');
        $stream = fopen($url, 'rb');
        self::assertIsResource($stream);
        fseek($stream, 4);
        self::assertSame('body', stream_get_contents($stream));
        fclose($stream);
        self::assertFalse(@fopen($url, 'wb'));
    }

    public function testOutputBufferingFunctionsSeeOnlyTheScriptsBuffers(): void
    {
        ob_start();
        $level = ob_get_level();
        Context::current()->baseLevel = $level;
        try {
            self::assertSame(0, Functions::ob_get_level());
            self::assertFalse(Functions::ob_end_clean());
            self::assertFalse(Functions::ob_get_clean());
            self::assertFalse(Functions::ob_get_contents());
            self::assertFalse(Functions::ob_get_length());
            self::assertSame([], Functions::ob_get_status());
            self::assertSame([], Functions::ob_get_status(true));
            self::assertSame([], Functions::ob_list_handlers());

            ob_start();
            echo 'mine';
            self::assertSame(1, Functions::ob_get_level());
            self::assertSame(0, Functions::ob_get_status()['level']);
            self::assertCount(1, Functions::ob_get_status(true));
            self::assertSame('mine', Functions::ob_get_clean());
            self::assertSame($level, ob_get_level(), 'Courser\'s buffer is still there');
        } finally {
            ob_end_clean();
        }
        self::assertSame([[E_USER_NOTICE, 'ob_end_clean(): Failed to delete buffer. No buffer to delete']], $this->errors);
    }

    public function testDefineKeepsAnExistingConstantQuietlyWhenTheValueIsTheSame(): void
    {
        $name = 'COURSER_TEST_' . strtoupper(bin2hex(random_bytes(4)));

        self::assertTrue(Functions::define($name, 'a'));
        self::assertFalse(Functions::define($name, 'a'));
        self::assertSame([], $this->errors);
        self::assertFalse(Functions::define($name, 'b'));
        self::assertSame('a', constant($name));
        self::assertCount(1, $this->errors);
        self::assertStringContainsString("Constant $name already defined; it keeps the value of an earlier request", $this->errors[0][1]);
    }

    public function testPerRequestRegistrationsAreCounted(): void
    {
        $context = Context::current();
        Functions::register_shutdown_function('strlen', 'x');
        Functions::set_error_handler(static fn (): bool => true);
        Functions::set_exception_handler(static function (): void {
        });
        Functions::restore_exception_handler();

        self::assertSame([['strlen', ['x']]], $context->shutdownFunctions);
        self::assertSame(1, $context->errorHandlers);
        self::assertSame(0, $context->exceptionHandlers);
        restore_error_handler();
        self::assertSame('fpm-fcgi', Functions::php_sapi_name());
    }

    public function testExitingRecordsTheLocationAndPassesTheStatusThrough(): void
    {
        self::assertSame(0, Functions::exiting('/app/x.php', 3));
        self::assertSame('bye', Functions::exiting('/app/x.php', 4, 'bye'));
        self::assertSame(7, Functions::exiting('/app/x.php', 5, 7));
        HttpWorker::noteExit('', 0);
    }
}
