<?php

declare(strict_types=1);

namespace Courser\Tests\Http;

use Courser\Frame;
use PHPUnit\Framework\TestCase;

require_once __DIR__ . '/WorkerProcess.php';
require_once __DIR__ . '/Psr7Support.php';

/**
 * Plain mode through a real worker process: fixtures/legacy/worker.php runs
 * fixtures/legacy/public/index.php, a classic script, with ScriptWorker.
 */
final class ScriptWorkerProcessTest extends TestCase
{
    private const APP = __DIR__ . '/fixtures/legacy';

    private string $dir;

    private ?WorkerProcess $worker = null;

    protected function setUp(): void
    {
        $this->dir = Psr7Support::tempDir();
        mkdir($this->dir . '/cache', 0700);
        mkdir($this->dir . '/sessions', 0700);
    }

    protected function tearDown(): void
    {
        $this->worker = null;
        exec('rm -rf ' . escapeshellarg($this->dir));
    }

    public function testTheSuperglobalsMatchAGetRequest(): void
    {
        $dump = $this->dump($this->exchange('GET', '/index.php?a=1&arr[]=x&arr[]=y&n[k]=v', ['X-Custom' => ['hello']], ['sid' => 'abc', 'theme' => 'dark mode']));

        self::assertSame(['a' => '1', 'arr' => ['x', 'y'], 'n' => ['k' => 'v']], $dump['get']);
        self::assertSame([], $dump['post']);
        self::assertSame(['sid' => 'abc', 'theme' => 'dark mode'], $dump['cookie']);
        self::assertSame(['a' => '1', 'arr' => ['x', 'y'], 'n' => ['k' => 'v']], $dump['request']);
        self::assertSame([], $dump['files']);
        $public = realpath(self::APP . '/public');
        self::assertSame([
            'REQUEST_METHOD' => 'GET',
            'REQUEST_URI' => '/index.php?a=1&arr[]=x&arr[]=y&n[k]=v',
            'QUERY_STRING' => 'a=1&arr[]=x&arr[]=y&n[k]=v',
            'REMOTE_ADDR' => '127.0.0.1',
            'SERVER_PROTOCOL' => 'HTTP/1.1',
            'HTTP_HOST' => 'example.test:8080',
            'HTTP_X_CUSTOM' => 'hello',
            'CONTENT_TYPE' => null,
            'HTTPS' => null,
            'SCRIPT_NAME' => '/index.php',
            'SCRIPT_FILENAME' => $public . '/index.php',
            'PHP_SELF' => '/index.php',
            'DOCUMENT_ROOT' => $public,
            'GATEWAY_INTERFACE' => 'CGI/1.1',
            'argv' => null,
        ], $dump['server']);
        self::assertSame('', $dump['input']);
        self::assertSame('fpm-fcgi', $dump['sapi']);
        self::assertSame('fpm-fcgi', $dump['sapiName']);
        self::assertSame($public . '/index.php', $dump['file'], '__FILE__ is the original, not the cached copy');
        self::assertSame($public, $dump['dir']);
        self::assertSame($public, $dump['cwd'], 'the script runs in its own directory, as under PHP-FPM');
        self::assertSame(0, $dump['obLevel'], 'Courser\'s own buffers do not count');
        self::assertSame(200, $dump['status']);
        self::assertFalse($dump['headersSent']);
        self::assertSame('kept', $dump['workerOwn'], 'the worker\'s globals are visible, as globals');
    }

    public function testHttpsAndAJsonBodyReachTheScript(): void
    {
        $dump = $this->dump($this->exchange('POST', '/', ['Content-Type' => ['application/json']], [], '{"k":[1,2]}', [], 'https://example.test/'));

        self::assertSame('on', $dump['server']['HTTPS']);
        self::assertSame('application/json', $dump['server']['CONTENT_TYPE']);
        self::assertSame([], $dump['post']);
        self::assertSame('{"k":[1,2]}', $dump['input'], 'php://input is the raw body');
    }

    public function testAnUrlencodedFormFillsPostAndRequest(): void
    {
        $dump = $this->dump($this->exchange(
            'POST',
            '/?a=from-query&q=1',
            ['Content-Type' => ['application/x-www-form-urlencoded']],
            [],
            '{"a":"from-post","b":["x","y"]}',
            ['parsed' => true],
        ));

        self::assertSame('POST', $dump['server']['REQUEST_METHOD']);
        self::assertSame(['a' => 'from-query', 'q' => '1'], $dump['get']);
        self::assertSame(['a' => 'from-post', 'b' => ['x', 'y']], $dump['post']);
        self::assertSame(['a' => 'from-post', 'q' => '1', 'b' => ['x', 'y']], $dump['request'], 'request_order GP: POST wins');
        self::assertSame('', $dump['input'], 'a parsed form does not reach the worker as bytes');
    }

    public function testAMultipartFormWithAFileFillsPostAndFiles(): void
    {
        file_put_contents($this->dir . '/upload1', "file contents\n");
        $uploads = json_encode(['doc' => ['name' => 'notes.txt', 'mime' => 'text/plain', 'size' => 14, 'error' => 0, 'tmpName' => $this->dir . '/upload1']]);

        $dump = $this->dump($this->exchange(
            'POST',
            '/',
            ['Content-Type' => ['multipart/form-data; boundary=x']],
            [],
            '{"title":"hello"}',
            ['parsed' => true, 'uploads' => $uploads],
        ));

        self::assertSame(['title' => 'hello'], $dump['post']);
        self::assertSame(['doc' => ['name' => 'notes.txt', 'type' => 'text/plain', 'size' => 14, 'error' => 0, 'content' => "file contents\n"]], $dump['files']);
    }

    public function testNothingCarriesOverToTheNextRequest(): void
    {
        file_put_contents($this->dir . '/upload1', 'x');
        $first = $this->exchange(
            'POST',
            '/?do=leak&extra=1',
            ['Content-Type' => ['multipart/form-data; boundary=x']],
            ['sid' => 'abc'],
            '{"field":"v"}',
            ['parsed' => true, 'uploads' => json_encode(['f' => ['name' => 'a', 'mime' => 'text/plain', 'size' => 1, 'error' => 0, 'tmpName' => $this->dir . '/upload1']])],
        );
        $second = $this->exchange('GET', '/?do=leak');

        self::assertSame(['seenBefore' => false, 'get' => ['do' => 'leak', 'extra' => '1'], 'post' => ['field' => 'v'], 'cookie' => ['sid' => 'abc'],
            'files' => ['f' => ['name' => 'a', 'full_path' => 'a', 'type' => 'text/plain', 'tmp_name' => $this->dir . '/upload1', 'error' => 0, 'size' => 1]],
            'session' => null, 'handler' => null], json_decode($first[2], true));
        self::assertSame(['seenBefore' => false, 'get' => ['do' => 'leak'], 'post' => [], 'cookie' => [], 'files' => [], 'session' => null, 'handler' => null],
            json_decode($second[2], true), 'variables, superglobals and error handlers of the first request are gone');

        $again = $this->dump($this->exchange('GET', '/'));
        self::assertSame('kept', $again['workerOwn']);
        $again = $this->dump($this->exchange('GET', '/'));
        self::assertSame('kept', $again['workerOwn'], 'the worker\'s own globals are put back after the script changed them');
    }

    public function testHeaderSetcookieAndHttpResponseCodeReachTheResponse(): void
    {
        [$status, $headers, $body] = $this->exchange('GET', '/?do=headers');

        self::assertSame(201, $status);
        self::assertSame([
            'X-One' => ['replaced'],
            'X-Many' => ['a', 'b'],
            'Content-type' => ['text/plain;charset=UTF-8'],
            'Set-Cookie' => ['session=a%20b%2Fc; path=/; HttpOnly; SameSite=Lax', 'theme=dark'],
        ], $headers);
        self::assertSame(implode("\n", [
            'X-One: replaced',
            'X-Many: a',
            'X-Many: b',
            'Content-type: text/plain;charset=UTF-8',
            'Set-Cookie: session=a%20b%2Fc; path=/; HttpOnly; SameSite=Lax',
            'Set-Cookie: theme=dark',
        ]), $body, 'headers_list() sees them');
    }

    public function testARedirectWithExitInAnIncludedFileIsSentAndTheWorkerEnds(): void
    {
        [$status, $headers, $body] = $this->exchange('GET', '/?do=redirect');

        self::assertSame(302, $status);
        self::assertSame('/login.php?back=%2F%3Fdo%3Dredirect', $headers['Location'][0] ?? null);
        self::assertSame('', $body);
        self::assertFalse($this->worker()->send(WorkerProcess::request('GET', 'http://example.test/')), 'the worker reads no more requests');
        [$code, $stdout, $stderr] = $this->worker()->finish();
        self::assertSame(0, $code);
        self::assertSame('', $stdout);
        self::assertStringContainsString(sprintf(
            "courser: exit() or die() was called at %s:7 while handling GET /; the response it produced (302) was sent and this worker will be replaced\n",
            realpath(self::APP . '/lib/auth.php'),
        ), $stderr);
    }

    public function testExitSendsTheStatusHeadersAndOutputSoFar(): void
    {
        [$status, $headers, $body] = $this->exchange('GET', '/?do=exit');

        self::assertSame(202, $status);
        self::assertSame(['yes'], $headers['X-Before-Exit'] ?? null);
        self::assertSame('partial output, then exit', $body);
    }

    public function testAFatalErrorSends500WithTheOutputSoFarAndNamesTheOriginalFile(): void
    {
        [$status, , $body] = $this->exchange('GET', '/?do=fatal');

        self::assertSame(500, $status);
        self::assertSame('before the error;', $body, 'as PHP-FPM with display_errors off');
        [$code, , $stderr] = $this->worker()->finish();
        self::assertSame(255, $code);
        $script = preg_quote(realpath(self::APP . '/public/index.php'), '#');
        self::assertMatchesRegularExpression(
            "#courser: a fatal error: Cannot redeclare declared_below\\(\\) \\(previously declared in {$script}:\\d+\\) in {$script}\\(\\d+\\) : eval\\(\\)'d code:1, while handling GET /; the response it produced \\(500\\) was sent and this worker will be replaced\n#",
            $stderr,
            'the cached copies are named by their originals',
        );
    }

    public function testRunningOutOfMemorySends500(): void
    {
        [$status, , $body] = $this->exchange('GET', '/?do=oom');

        self::assertSame(500, $status);
        self::assertSame('', $body, 'PHP drops the output buffers when memory runs out');
        [$code, , $stderr] = $this->worker()->finish();
        self::assertSame(255, $code);
        self::assertStringContainsString('courser: a fatal error: Allowed memory size of 33554432 bytes exhausted', $stderr);
    }

    public function testAnUncaughtExceptionIsLoggedAnswered500AndTheWorkerGoesOn(): void
    {
        $pid = $this->dump($this->exchange('GET', '/'))['server'];
        [$status, $headers, $body] = $this->exchange('GET', '/?do=throw');

        self::assertSame(500, $status);
        self::assertSame(['yes'], $headers['X-Before-Throw'] ?? null);
        self::assertSame('before the exception;', $body);
        [$status] = $this->exchange('GET', '/?do=undefined');
        self::assertSame(500, $status, 'an Error is an exception too');
        self::assertSame($pid, $this->dump($this->exchange('GET', '/'))['server'], 'the same worker serves the next request');

        [$status, , $body] = $this->exchange('GET', '/?do=handler');
        self::assertSame(503, $status);
        self::assertSame('handled: for the handler', $body, 'the script\'s exception handler renders the page');

        [, , $stderr] = $this->worker()->finish();
        self::assertStringContainsString('PHP Fatal error:  Uncaught RuntimeException: thrown by the script in ' . realpath(self::APP . '/public/index.php') . ':', $stderr);
        self::assertStringContainsString('PHP Fatal error:  Uncaught Error: Call to undefined function courser_legacy_no_such_function()', $stderr);
        self::assertStringNotContainsString('for the handler', $stderr);
    }

    public function testLargeOutputIsStreamedInChunks(): void
    {
        $this->worker = new WorkerProcess(self::APP . '/worker.php', ['COURSER_LEGACY_CACHE' => $this->dir . '/cache', 'COURSER_LEGACY_BUFFER' => '100000']);

        [$status, $headers, $body, $frames] = $this->exchange('GET', '/?do=big&size=1000000');

        self::assertSame(200, $status);
        self::assertSame(['application/octet-stream'], $headers['Content-Type'] ?? null);
        self::assertSame(1000000, strlen($body));
        self::assertSame(str_repeat('a', 10000) . str_repeat('b', 10000), substr($body, 0, 20000));
        self::assertGreaterThan(10, count($frames));
        foreach ($frames as $i => $frame) {
            self::assertLessThanOrEqual(128 << 10, strlen($frame->payload), "frame $i");
        }
        self::assertSame(Frame::STREAM, $frames[0]->byte10 & Frame::STREAM);
        self::assertSame(0, $frames[count($frames) - 1]->byte10 & Frame::STREAM);

        [$status, , $body, $frames] = $this->exchange('GET', '/?do=big&size=50000');
        self::assertSame(200, $status);
        self::assertCount(1, $frames, 'output under the buffer size goes in one frame');
        self::assertSame(50000, strlen($body));
    }

    public function testFlushSendsTheHeadersAndTheOutputSoFar(): void
    {
        [$status, $headers, $body, $frames] = $this->exchange('GET', '/?do=flush');

        self::assertSame(200, $status);
        self::assertCount(2, $frames);
        self::assertStringEndsWith('first;', $frames[0]->payload);
        self::assertSame(Frame::STREAM, $frames[0]->byte10);
        self::assertSame('first;sent=true;last', $body);
        self::assertArrayNotHasKey('X-Late', $headers);
        [, , $stderr] = $this->worker()->finish();
        self::assertStringContainsString('Cannot modify header information - headers already sent', $stderr);
    }

    public function testSessionsTakeTheIdFromTheRequestCookie(): void
    {
        $path = '/?do=session&dir=' . rawurlencode($this->dir . '/sessions');
        [, $headers, $body] = $this->exchange('GET', $path);
        self::assertSame('visits=1', $body);
        self::assertMatchesRegularExpression('/^PHPSESSID=([a-z0-9]+); path=\/$/', $headers['Set-Cookie'][0] ?? '');
        self::assertSame(['no-store, no-cache, must-revalidate'], $headers['Cache-Control'] ?? null);
        $id = explode(';', substr($headers['Set-Cookie'][0], 10))[0];

        [, $headers, $body] = $this->exchange('GET', $path, [], ['PHPSESSID' => $id]);
        self::assertSame('visits=2', $body);
        self::assertArrayNotHasKey('Set-Cookie', $headers, 'the client has the cookie already');

        [, $headers, $body] = $this->exchange('GET', $path);
        self::assertSame('visits=1', $body, 'another client does not get the last session');
        self::assertStringNotContainsString($id, $headers['Set-Cookie'][0] ?? '');
    }

    public function testShutdownFunctionsRunAtTheEndOfTheRequest(): void
    {
        self::assertSame('hello and goodbye', $this->exchange('GET', '/?do=shutdown')[2]);
        self::assertSame('hello and goodbye', $this->exchange('GET', '/?do=shutdown')[2]);
    }

    public function testDefineKeepsTheFirstValueAndSaysSo(): void
    {
        self::assertSame('demo one', $this->exchange('GET', '/?do=define&token=one')[2]);
        self::assertSame('demo one', $this->exchange('GET', '/?do=define&token=two')[2]);
        self::assertSame('demo one', $this->exchange('GET', '/?do=define&token=one')[2]);

        [, , $stderr] = $this->worker()->finish();
        self::assertSame(1, substr_count($stderr, 'PHP Warning:  Constant LEGACY_REQUEST_TOKEN already defined; it keeps the value of an earlier request'));
        self::assertStringNotContainsString('LEGACY_APP_NAME', $stderr);
    }

    public function testFunctionsAndClassesDeclaredByTheScriptOrItsIncludesSurviveTheNextRequest(): void
    {
        for ($i = 0; $i < 2; ++$i) {
            [$status, $headers, $body] = $this->exchange('GET', '/?do=helpers');
            self::assertSame(200, $status, $body);
            self::assertSame('HELLO! loaded=1', $body);
            self::assertSame(['yes'], $headers['X-Shouted'] ?? null);

            [$status, , $body] = $this->exchange('GET', '/?do=declared');
            self::assertSame(200, $status, $body);
            self::assertSame('function class', $body, 'declared below their use, as PHP hoists them');
        }
        [, , $stderr] = $this->worker()->finish();
        self::assertStringNotContainsString('redeclare', $stderr);
    }

    public function testRequireOnceIsOncePerRequestSoTheGlobalsItSetsAreThereOnEveryRequest(): void
    {
        for ($i = 1; $i <= 3; ++$i) {
            [$status, , $body] = $this->exchange('GET', '/?do=once');
            self::assertSame(200, $status, $body);
            self::assertSame([
                'db' => ['dsn' => 'sqlite::memory:', 'user' => 'app'],
                'configRuns' => 1,
                'returned' => 'config loaded',
                'again' => true,
                'dsn' => 'sqlite::memory: v3',
                'counted' => 1,
                'include_once' => [1, true],
                'inFunction' => 'set by local.php',
                'localIsGlobal' => false,
            ], json_decode($body, true), "request $i: config.php ran once in this request, its global \$db is set, and its function is declared");
        }
        [, , $stderr] = $this->worker()->finish();
        self::assertStringNotContainsString('redeclare', $stderr);
        self::assertStringNotContainsString('already defined', $stderr);
        self::assertStringNotContainsString('Warning', $stderr);
    }

    public function testTheScriptsOutputBuffersAreItsOwn(): void
    {
        self::assertSame('levels=0 false', $this->exchange('GET', '/?do=ob')[2]);
        self::assertSame(200, $this->exchange('GET', '/')[0], 'the worker still works');
    }

    public function testThePathPicksTheScriptInRouteMode(): void
    {
        $this->worker = new WorkerProcess(self::APP . '/worker.php', ['COURSER_LEGACY_CACHE' => $this->dir . '/cache', 'COURSER_LEGACY_ROUTE' => '1']);

        [$status, , $body] = $this->exchange('GET', '/admin/page.php/extra/info?x=1');
        self::assertSame(200, $status, $body);
        self::assertSame('admin page /admin/page.php /admin/page.php/extra/info /extra/info page.php admin', $body);

        [$status] = $this->exchange('GET', '/missing.php');
        self::assertSame(404, $status);
        [$status] = $this->exchange('GET', '/../worker.php');
        self::assertSame(404, $status);

        $dump = $this->dump($this->exchange('GET', '/some/pretty/url'));
        self::assertSame('/index.php', $dump['server']['SCRIPT_NAME'], 'any other path runs the front script');
    }

    public function testTheCacheHoldsPrivateCopiesUnderTheOriginalPath(): void
    {
        $this->exchange('GET', '/');

        $original = realpath(self::APP . '/public/index.php');
        $copies = glob($this->dir . '/cache' . $original . '.*.php') ?: [];
        self::assertCount(2, $copies, 'the body and its declarations');
        foreach ($copies as $copy) {
            self::assertSame(0600, fileperms($copy) & 0777);
        }
        self::assertSame(0700, fileperms($this->dir . '/cache' . dirname($original)) & 0777);
    }

    /**
     * @return array<string, mixed>
     */
    private function dump(array $response): array
    {
        self::assertSame(200, $response[0], $response[2]);
        $dump = json_decode($response[2], true);
        self::assertIsArray($dump, $response[2]);

        return $dump;
    }

    /**
     * @param array<string, list<string>> $headers
     * @param array<string, string>       $cookies
     * @param array<string, mixed>        $fields
     *
     * @return array{0: int, 1: array<string, list<string>>, 2: string, 3: list<Frame>}
     */
    private function exchange(string $method, string $path, array $headers = [], array $cookies = [], string $body = '', array $fields = [], ?string $base = null): array
    {
        return $this->worker()->exchange(WorkerProcess::request($method, ($base === null ? 'http://example.test:8080' : rtrim($base, '/')) . $path, $headers, $cookies, $body, $fields));
    }

    private function worker(): WorkerProcess
    {
        return $this->worker ??= new WorkerProcess(self::APP . '/worker.php', ['COURSER_LEGACY_CACHE' => $this->dir . '/cache']);
    }
}
